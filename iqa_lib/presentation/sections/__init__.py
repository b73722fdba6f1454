"""The paper's sections, one module each, named after its notebook; :mod:`.base` is their framework.

Each section module has one function per table, per figure and per set of claims, which its
notebook calls cell by cell, and ``build(ctx)``, the whole section in one call. :data:`SECTIONS`
maps a section's name (its notebook, its folder under ``results/``) to that function.
"""

from __future__ import annotations

from collections.abc import Callable

from iqa_lib.presentation.sections import (
    appendix_g_content,
    section4_nr_iqa,
    section5_strong_tg,
    section6_3_mixtures,
    section6_zsclip,
)
from iqa_lib.presentation.sections.base import Context, Section

SECTIONS: dict[str, Callable[[Context], Section]] = {
    "section4_nr_iqa": section4_nr_iqa.build,
    "section5_strong_tg": section5_strong_tg.build,
    "section6_zsclip": section6_zsclip.build,
    "appendix_g_content": appendix_g_content.build,
    "section6_3_mixtures": section6_3_mixtures.build,
}
