"""Deconvnet figures (Zeiler & Fergus Figs. 1, 2 and 6).

- :func:`layer_sheet`: Fig. 2: for each of N maps, the 3x3 grid of its nine strongest
  activations projected alone beside the 3x3 grid of the image patches behind them.
  Each projection is shown centred on its own scale (see :mod:`jaxvis.plots`), so weak
  and strong maps alike show their structure; the patches are plain pixels.
- :func:`filters`: first-layer filters as images, each centred on its own scale.
- :func:`strongest_per_layer`: one image's strongest map in each layer, projected.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from matplotlib.figure import Figure

from jaxvis import plots
from jaxvis.models import Model
from jaxvis.topk import Patches


def mosaic(tiles_KHWC, cols: int, gap: int = 1, fill: float = 1.0) -> np.ndarray:
    """Tiles in [0, 1] laid out row by row, ``cols`` per row, ``gap`` pixels apart."""
    tiles = np.asarray(tiles_KHWC)
    k, h, w, c = tiles.shape
    rows = math.ceil(k / cols)
    out = np.full((rows * (h + gap) - gap, cols * (w + gap) - gap, c), fill, np.float32)
    for i, tile in enumerate(tiles):
        r, q = divmod(i, cols)
        out[r * (h + gap):r * (h + gap) + h, q * (w + gap):q * (w + gap) + w] = tile
    return out


def layer_sheet(model: Model, patches: Patches, layer: str, per_row: int = 4) -> Figure:
    """Fig. 2 for the maps in ``patches``: projections (left) beside patches (right)."""
    k = patches.projection.shape[1]
    side = math.ceil(math.sqrt(k))
    cells, labels = [], []
    for c, projection, patch in zip(patches.maps, patches.projection, patches.patch):
        cells += [mosaic(np.stack([plots.centred(p) for p in projection]), side),
                  mosaic(np.stack([plots.pixels(model, p) for p in patch]), side)]
        labels += [f"map {c}", "patches"]
    per = 2 * per_row
    rows = [cells[i:i + per] for i in range(0, len(cells), per)]
    fig = plots.grid(rows, title=f"{model.name} {layer}: top-{k} activations per map, "
                     "projected (deconvnet) and their image patches", size=1.6)
    for ax, label in zip((ax for ax in fig.axes if ax.images), labels):
        ax.set_title(label, fontsize=7)
    fig.tight_layout()  # again: the titles above are set after grid's layout
    return fig


def filters(kernel_HWIO, per_row: int = 16) -> Figure:
    """First-layer filters as images (one channel shown grey, three as RGB)."""
    k = np.asarray(kernel_HWIO)
    tiles = np.stack([plots.centred(k[..., o]) for o in range(k.shape[-1])])
    fig = plots.grid([[mosaic(tiles, per_row)]], size=min(0.5 * per_row, 10))
    fig.suptitle(f"{k.shape[-1]} first-layer filters, {k.shape[0]}x{k.shape[1]}", fontsize=9)
    return fig


def strongest_per_layer(model: Model, x_NHWC, projections: dict[str, np.ndarray], labels: Sequence[str],
                        title: str) -> Figure:
    """Rows of images, each followed by its strongest map per layer projected."""
    rows = [[plots.pixels(model, x_NHWC[i])] + [plots.centred(projections[n][i]) for n in projections]
            for i in range(len(x_NHWC))]
    return plots.grid(rows, list(labels), ["input", *projections], title=title)
