"""``iqa-kit``: one command, one sub-command per job; each lives in ``iqa_lib.commands``."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from iqa_lib import __version__

COMMANDS = (
    "validate", "quickstart", "prepare", "corrupt", "manifest", "score", "analyze", "describe", "notebook",
    "audit", "reference", "correctness", "prior", "learn_q",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="iqa-kit",
        description="Do image-quality scores predict whether a classifier is right? "
        "(Drenkow & Unberath, reference implementation)",
    )
    parser.add_argument("--version", action="version", version=f"iqa-kit {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMANDS:
        importlib.import_module(f"iqa_lib.commands.{name}").add_parser(sub)
    return parser


def _skip_iri_grammar() -> None:
    """Spare each notebook run the 1.3 s jsonschema spends building an IRI grammar at import.

    jsonschema imports ``rfc3987_syntax`` when it is installed (jupyterlab brings it) and
    compiles a Lark grammar for the ``iri`` format checkers; nbformat, which every notebook
    run imports, never validates that format. Marking the module absent in this process only
    (a CLI run, not a user's session) makes jsonschema skip those two checkers.
    """
    sys.modules.setdefault("rfc3987_syntax", None)  # type: ignore[arg-type]


def main(argv: Sequence[str] | None = None) -> int:
    _skip_iri_grammar()
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except (ValueError, FileNotFoundError, RuntimeError, KeyError) as exc:
        # Our errors are written for people: print them without a traceback.
        message = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        print(f"iqa-kit {args.command}: error: {message}", file=sys.stderr)
        return 2
    except OSError as exc:
        # the machine refused (disk full, I/O error, read-only): one line, the path, what it means
        from iqa_lib.fileio import WriteError, is_write_fault

        message = WriteError(exc.filename or "?", exc) if is_write_fault(exc) else exc
        print(f"iqa-kit {args.command}: error: {message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
