"""Feature evolution figure (Zeiler & Fergus Fig. 4).

One row per chosen map, grouped by layer (lowest first); one column per training
snapshot. Each cell is the deconvnet projection of the map's strongest activation over
the data at that snapshot, cropped to the unit's receptive field and shown centred on
its own scale (see :mod:`jaxvis.plots`), titled with the activation's value, so that a
map whose strongest activation grows or shrinks is visible although each cell is
rescaled. Upper layers' fields reach past the image, where a projection is zero: each
cell shows only the part of the field inside the image.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from matplotlib.figure import Figure

from jaxvis import plots
from jaxvis.analysis.evolution import Evolution


def inside_image(projection_HWC, window, image_hw) -> np.ndarray:
    """The part of a field-sized crop at ``window`` (top, left, height, width) that lies
    inside an image of size ``image_hw``."""
    top, left, h, w = (int(v) for v in window)
    r0, c0 = max(0, -top), max(0, -left)
    r1, c1 = min(h, image_hw[0] - top), min(w, image_hw[1] - left)
    return np.asarray(projection_HWC)[r0:r1, c0:c1]


def evolution_grid(evo: Evolution, column_labels: Sequence[str] | None = None, title: str | None = None,
                   size: float = 1.2) -> Figure:
    """Rows: maps by layer; columns: snapshots (labelled ``column_labels``, default
    ``step N``); each cell titled with the strongest activation's value."""
    labels = list(column_labels) if column_labels is not None else [f"step {s}" for s in evo.steps]
    if len(labels) != len(evo.steps):
        raise ValueError(f"{len(labels)} column labels for {len(evo.steps)} snapshots")
    rows, row_labels, values = [], [], []
    for layer, found in evo.layers.items():
        for i, m in enumerate(found.maps):
            rows.append([plots.centred(inside_image(found.projection[s, i], found.window[s, i], evo.image_hw))
                         for s in range(len(evo.steps))])
            row_labels.append(f"{layer}\nmap {m}")
            values.append(found.value[:, i])
    fig = plots.grid(rows, row_labels, title=title or "Strongest activation per map, projected (deconvnet)",
                     size=size)
    cols = len(evo.steps)
    for r, row_values in enumerate(values):
        for s, value in enumerate(row_values):
            head = f"{labels[s]}\n" if r == 0 else ""
            fig.axes[r * cols + s].set_title(f"{head}{value:.3g}", fontsize=7)
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.5 / fig.get_figheight()))  # room for the title
    return fig
