"""The report's figures (:mod:`jaxvis.report`): arrays in, matplotlib ``Figure`` out.

Images are pixels in [0, 1] and projections are already centred (:func:`jaxvis.plots.centred`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np

from jaxvis import plots

import matplotlib.pyplot as plt  # noqa: E402  (after jaxvis.plots has chosen the Agg backend)
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.patches import Rectangle  # noqa: E402


def photo(pixels_HWC, title: str, size: float = 2.2) -> Figure:
    """The photo as the network gets it."""
    fig, ax = plt.subplots(figsize=(size, size))
    plots.show(ax, pixels_HWC, title)
    fig.tight_layout()
    return fig


def projections(pixels_HWC, centred_LHWC: Sequence[np.ndarray], layers: Sequence[str], channels_L, windows,
                rule: str, per_row: int = 6, size: float = 1.6) -> Figure:
    """Per layer, three panels stacked: the whole projection with its strongest unit's
    receptive field boxed, the projection zoomed on that field (:func:`jaxvis.plots.field_crop`),
    and the photo's patch under it. Layers run ``per_row`` to a row.

    Args:
      pixels_HWC: the photo.
      centred_LHWC: each layer's projection, centred.
      channels_L: the map projected per layer; windows: ``(top, left, height, width)``
        of the strongest unit's receptive field per layer (may reach past the image).
    """
    groups = math.ceil(len(layers) / per_row)
    cols = min(per_row, len(layers))
    fig, axes = plt.subplots(3 * groups, cols, figsize=(size * cols + 0.8, size * 3 * groups + 0.6), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for k, (layer, image, channel, window) in enumerate(zip(layers, centred_LHWC, channels_L, windows)):
        g, c = divmod(k, per_row)
        zoomed = plots.field_crop(image, window)
        top, left = max(0, int(window[0])), max(0, int(window[1]))
        whole, zoom, patch = axes[3 * g, c], axes[3 * g + 1, c], axes[3 * g + 2, c]
        for ax in (whole, zoom, patch):
            ax.axis("on")
        plots.show(whole, image, f"{layer}, map {int(channel)}")
        whole.add_patch(Rectangle((left - 0.5, top - 0.5), zoomed.shape[1], zoomed.shape[0], fill=False,
                                  edgecolor="red", linewidth=1))
        plots.show(zoom, zoomed)
        zoom.set_xlabel(f"field {zoomed.shape[0]}x{zoomed.shape[1]}px", fontsize=7)
        plots.show(patch, plots.field_crop(pixels_HWC, window))
        if c == 0:
            for ax, label in ((whole, "whole"), (zoom, "zoomed"), (patch, "photo")):
                ax.set_ylabel(label, fontsize=8)
    fig.suptitle(f"Strongest map of each layer, its strongest unit projected alone ({rule})", fontsize=10)
    fig.tight_layout()
    return fig


def variants(names: Sequence[str], pixels_V: Sequence[np.ndarray], centred_VL: Sequence[Sequence[np.ndarray]],
             layers: Sequence[str], rule: str, size: float = 1.5) -> Figure:
    """Variants (columns): the transformed photo on top, its projections at ``layers`` below."""
    rows = [list(pixels_V)] + [[per[i] for per in centred_VL] for i in range(len(layers))]
    fig = plots.grid(rows, ["photo", *layers], [n.replace(", ", ",\n") for n in names],
                     title=f"Transformed photo and its strongest maps projected ({rule})", size=size)
    return fig


def heat_map(pixels_HWC, heat_HW, title: str, size: float = 3.2) -> Figure:
    """The photo, and the heat map over it (jet, half transparent) with a colour bar."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(2 * size + 0.9, size))
    plots.show(left, pixels_HWC, "photo")
    plots.show(right, pixels_HWC)
    limit = float(np.abs(heat_HW).max()) or 1.0
    image = right.imshow(heat_HW, cmap="jet", alpha=0.5, vmin=-limit, vmax=limit)
    fig.colorbar(image, ax=right, fraction=0.046, pad=0.03)
    right.set_title(title, fontsize=8)
    fig.tight_layout()
    return fig


def row(pixels_HWC, maps: Mapping[str, np.ndarray], title: str, size: float = 2.0) -> Figure:
    """The photo, then each map ([0, 1] images), in one row."""
    return plots.grid([[pixels_HWC, *maps.values()]], col_labels=["photo", *maps], title=title, size=size)
