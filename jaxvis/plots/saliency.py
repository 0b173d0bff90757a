"""Figures for the gradient family: saliency maps (Simonyan et al. Sec. 3, Fig. 2), class
models (Simonyan Sec. 2, Fig. 1; Yosinski et al. Fig. 3) and inversions (Mahendran &
Vedaldi Fig. 6), plus the faithfulness curves.

Saliency maps are non-negative: each is shown on its own scale, black 0 to white at its
largest value. Class models are stretched to [0, 1] per image (their range is set by the
optimization, not by the data); inversions are shown as pixels, clipped like inputs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from jaxvis import plots, saliency
from jaxvis.models import Model


def scaled(map_HW) -> np.ndarray:
    """A non-negative map divided by its maximum, as an ``H x W x 1`` image."""
    m = np.asarray(map_HW, np.float32)
    peak = float(m.max())
    return (m / peak if peak > 0 else m)[..., None]


def stretched(model: Model, x_HWC) -> np.ndarray:
    """A synthesized input with the mean added back, stretched to [0, 1]."""
    p = np.asarray(model.denormalize(np.asarray(x_HWC)))
    low, high = float(p.min()), float(p.max())
    return np.full_like(p, 0.5) if high == low else (p - low) / (high - low)


def methods_grid(model: Model, x_NHWC, maps: Mapping[str, np.ndarray], row_labels: Sequence[str],
                 boxes_N4=None) -> Figure:
    """Images x methods: each input, then each method's map; ``boxes_N4`` (top, left,
    height, width) are drawn on the inputs (weakly supervised localization)."""
    rows = [[plots.pixels(model, x_NHWC[i])] + [scaled(maps[m][i]) for m in maps] for i in range(len(x_NHWC))]
    fig = plots.grid(rows, list(row_labels), ["input", *maps],
                     title="Saliency maps (max over channels of |attribution|); box: largest component >= 95% quantile")
    if boxes_N4 is not None:
        inputs = [ax for ax in fig.axes if ax.images][::len(maps) + 1]
        for ax, (top, left, height, width) in zip(inputs, np.asarray(boxes_N4)):
            ax.add_patch(Rectangle((left - 0.5, top - 0.5), width, height, fill=False, edgecolor="red", lw=1.2))
    return fig


def class_models_grid(model: Model, images: Mapping[str, np.ndarray], probabilities: Mapping[str, np.ndarray],
                      class_names: Sequence[str], per_row: int = 10) -> Figure:
    """Presets (blocks of rows) x classes (``per_row`` columns a row): each class model
    titled with its class's name (wrapped to the cell), its probability below it."""
    presets, k = list(images), len(class_names)
    starts = range(0, k, per_row)
    rows, labels = [], []
    for p in presets:
        tiles = [stretched(model, x) for x in images[p]]
        rows += [tiles[s:s + per_row] for s in starts]
        labels += [p] + [""] * (len(starts) - 1)
    fig = plots.grid(rows, labels, title="Class models (mean added back, stretched per image)", size=1.1)
    cells = [ax for ax in fig.axes if ax.images]
    for i, p in enumerate(presets):
        for c in range(k):
            ax = cells[i * k + c]
            if i == 0 or len(starts) > 1:
                ax.set_title(plots.wrap(class_names[c], 1.1, 7), fontsize=7)
            ax.set_xlabel(f"p={float(probabilities[p][c]):.3f}", fontsize=6)
    fig.tight_layout()
    return fig


def inversion_grid(model: Model, x_NHWC, reconstructions: Mapping[str, np.ndarray],
                   errors: Mapping[str, np.ndarray]) -> Figure:
    """Layers x reconstructions: the originals on top, then one row per layer."""
    rows = [[plots.pixels(model, x) for x in x_NHWC]]
    rows += [[plots.pixels(model, x) for x in reconstructions[layer]] for layer in reconstructions]
    labels = ["original"] + [f"{layer}\nerr {float(np.mean(errors[layer])):.3f}" for layer in reconstructions]
    return plots.grid(rows, labels, title="Inversion from each layer's code (Mahendran & Vedaldi); "
                      "err: mean relative feature error")


def curves_figure(deletion: Mapping[str, saliency.Curves], insertion: Mapping[str, saliency.Curves]) -> Figure:
    """Mean deletion and insertion curves of each method, areas in the legend."""
    fig = Figure(figsize=(9, 3.6))
    for ax, (name, curves) in zip(fig.subplots(1, 2), (("deletion (lower is better)", deletion),
                                                       ("insertion (higher is better)", insertion))):
        for method, c in curves.items():
            ax.plot(np.asarray(c.fractions), np.asarray(c.probabilities).mean(axis=0),
                    label=f"{method} ({float(np.mean(c.area)):.3f})")
        ax.set_xlabel("fraction of pixels")
        ax.set_ylabel("probability of the class")
        ax.set_title(name, fontsize=9)
        ax.legend(fontsize=7)
    fig.tight_layout()
    return fig
