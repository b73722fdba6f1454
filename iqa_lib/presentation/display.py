"""Showing the kit's figures in a notebook, one way everywhere.

The kit draws with the Agg backend outside a kernel (figures are written to files);
inside one, ``show`` embeds a PNG, which every viewer shows and the offline HTML export
keeps, and closes the figure so it is not drawn twice.
"""

from __future__ import annotations

import matplotlib.pyplot as plt


def show(fig: plt.Figure, dpi: int = 110) -> None:
    """Display a figure in a notebook as an embedded PNG, then close it.

    The kit selects the Agg backend (figures are written to files), under which
    a notebook shows ``<Figure size ...>`` instead of the picture; a PNG always shows,
    and it is embedded in the exported HTML.
    """
    import io

    from IPython.display import Image, display

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    plt.close(fig)
    display(Image(data=buf.getvalue()))
