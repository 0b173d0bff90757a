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


def sheet_columns(count: int, most_wide: float = 3.0) -> int:
    """Columns for ``count`` equal tiles: the fewest empty cells, no fewer columns than
    rows, at most ``most_wide`` times as many (ties: the squarer layout)."""
    low = math.ceil(math.sqrt(count))
    return min(range(low, max(low, math.ceil(math.sqrt(most_wide * count))) + 1),
               key=lambda c: (c * math.ceil(count / c) - count, c))


def filters(kernel_HWIO, cols: int | None = None, width: float = 6.0) -> Figure:
    """First-layer filters as images (one channel shown grey, three as RGB), on a sheet
    whose rows and columns fit their count (:func:`sheet_columns`, unless ``cols``) and
    whose canvas fits the mosaic, ``width`` inches wide."""
    k = np.asarray(kernel_HWIO)
    tiles = np.stack([plots.centred(k[..., o]) for o in range(k.shape[-1])])
    sheet = mosaic(tiles, cols or sheet_columns(len(tiles)))
    head = 0.35  # inches for the title
    height = width * sheet.shape[0] / sheet.shape[1]
    fig = Figure(figsize=(width, height + head))
    ax = fig.add_axes((0.0, 0.0, 1.0, height / (height + head)))
    plots.show(ax, sheet)
    ax.axis("off")
    fig.suptitle(f"{k.shape[-1]} first-layer filters, {k.shape[0]}x{k.shape[1]}", fontsize=9,
                 y=1 - 0.05 / (height + head), va="top")
    return fig


def strongest_per_layer(model: Model, x_NHWC, projections: dict[str, np.ndarray], labels: Sequence[str],
                        title: str, windows: dict[str, np.ndarray] | None = None) -> Figure:
    """Rows of images, each followed by its strongest map per layer projected; with
    ``windows`` (layer -> ``(N, 4)`` receptive-field windows of the projected units), each
    projection is cropped to its unit's field, so that a low layer's few pixels fill the cell."""
    def cell(name, i):
        p = projections[name][i]
        return plots.centred(p if windows is None else plots.field_crop(p, windows[name][i]))

    rows = [[plots.pixels(model, x_NHWC[i])] + [cell(n, i) for n in projections] for i in range(len(x_NHWC))]
    columns = list(projections) if windows is None else [
        f"{n} (field {windows[n][0][2]}x{windows[n][0][3]})" for n in projections]
    return plots.grid(rows, list(labels), ["input", *columns], title=title)
