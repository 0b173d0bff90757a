"""Figures of the analyses (Zeiler & Fergus Sec. 4.3): invariance curves (Fig. 5) and the
parts masked for correspondence (Table 1).

Fig. 5 has a row per transform family: a strip of one image transformed, then for each
chosen layer the distance between the features of the transformed and the original
image (relative to the original's norm), then the probability of the true label (of the
predicted class, for photos); one curve per image.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from jaxvis import plots
from jaxvis.analysis.invariance import Invariance
from jaxvis.plots.deconvnet import mosaic

AXIS_LABELS = {"translate_v": "vertical shift (pixels, + down)", "translate_h": "horizontal shift (pixels, + right)",
               "scale": "scale factor", "rotate": "rotation (degrees, counter-clockwise)"}


def invariance_figure(results: Mapping[str, Invariance], layers: Sequence[str], curve_labels: Sequence[str],
                      strips: Mapping[str, tuple[np.ndarray, np.ndarray]] | None = None,
                      title: str | None = None, target: str = "true label") -> Figure:
    """Fig. 5 from :func:`jaxvis.analysis.invariance.measure`'s results.

    Args:
      results: family -> its :class:`Invariance` (``(N, A)`` arrays), one row each.
      layers: the layers to plot (columns), each measured in every result.
      curve_labels: the legend's name of each of the N images.
      strips: family -> ``(amounts_K, pixels_KHWC)``: one image at a few amounts, drawn
        as the first column.
      target: what the last column's probability is of ("true label", "predicted class").
    """
    lead = 1 if strips else 0
    cols = lead + len(layers) + 1
    widths = [1.7] * lead + [1.0] * (cols - lead)
    fig = Figure(figsize=(3.1 * sum(widths), 2.5 * len(results) + 0.6))
    axes = fig.subplots(len(results), cols, squeeze=False, gridspec_kw={"width_ratios": widths})
    colours = plots.palette(len(curve_labels))
    for row, (family, result) in enumerate(results.items()):
        if strips:
            amounts_K, pixels_KHWC = strips[family]
            tiles = np.clip(np.asarray(pixels_KHWC), 0.0, 1.0)
            ax = axes[row, 0]
            plots.show(ax, mosaic(tiles, len(tiles), gap=2))
            w = tiles.shape[2] + 2
            ax.set_xticks(np.arange(len(tiles)) * w + (w - 2) / 2)
            ax.set_xticklabels([f"{a:g}" for a in amounts_K], fontsize=7)
            ax.set_xlabel(AXIS_LABELS[family], fontsize=8)
        panels = [(f"{layer}: distance / |original|", result.relative[layer]) for layer in layers]
        panels.append((f"p({target})", result.true_prob))
        for col, (name, values_NA) in enumerate(panels, start=lead):
            ax = axes[row, col]
            for i, curve in enumerate(np.asarray(values_NA)):
                ax.plot(result.amounts, curve, color=colours[i], lw=1.1, marker=".", ms=2.5,
                        label=curve_labels[i])
            ax.set_xlabel(AXIS_LABELS[family], fontsize=8)
            ax.tick_params(labelsize=7)
            if col == cols - 1:
                ax.set_ylim(-0.03, 1.03)
            if row == 0:
                ax.set_title(name, fontsize=9)
    axes[0, -1].legend(fontsize=6, loc="lower right", ncol=2, title_fontsize=6)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def parts_figure(pixels_NHWC, boxes: Mapping[str, np.ndarray], labels: Sequence[str] | None = None,
                 size: float = 1.1) -> Figure:
    """The images (rows) with each part's box drawn on them (columns): ``boxes`` maps a
    part to its ``(N, 4)`` boxes (top, left, height, width)."""
    pixels_NHWC = np.clip(np.asarray(pixels_NHWC), 0.0, 1.0)
    n, parts = len(pixels_NHWC), list(boxes)
    fig = Figure(figsize=(size * len(parts) + 0.6, size * n + 0.5))
    axes = fig.subplots(n, len(parts), squeeze=False)
    for j, part in enumerate(parts):
        for i in range(n):
            ax = axes[i, j]
            plots.show(ax, pixels_NHWC[i], part if i == 0 else None)
            top, left, h, w = (int(v) for v in np.asarray(boxes[part])[i])
            ax.add_patch(Rectangle((left - 0.5, top - 0.5), w, h, fill=False, edgecolor="red", lw=1.2))
            if labels is not None and j == 0:
                ax.set_ylabel(labels[i], fontsize=7)
    fig.tight_layout()
    return fig
