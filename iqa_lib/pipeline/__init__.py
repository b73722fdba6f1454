"""The kit's stages, one function each: what ``dvc.yaml``, the CLI and the notebooks all call.

A stage function takes typed settings (never an ``argparse.Namespace``), does the work
through the layers below (data, scorers, scoring, analysis, audit, presentation) and
returns what it wrote. ``iqa_lib.commands`` only parses arguments and prints.
"""
