"""Presentation: the paper's tables, figures, section reports and notebook HTML.

Apart from the computing rooms (``analysis``, ``stats``, ``scoring``, ``audit``): every
module here reads tidy frames those produce and draws or formats them, nothing here
computes a statistic a test must check. ``sections`` assembles a paper section from the
analysis tables, ``tables`` renders the paper's tables (CSV, Markdown, LaTeX), the
``plots*`` modules draw figures with one function per figure (the same function writes the
PNG/PDF and draws in a notebook cell), ``display.show`` embeds a figure in a notebook,
``score_report`` is the score notebook's view of a run and ``html_export`` writes the
self-contained offline HTML of an executed notebook.
"""
