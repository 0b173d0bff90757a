"""Zeiler & Fergus Fig. 7 (Sec. 4.2): what covering each part of an image does to the network.

For each image, one row of panels: (a) the image with the occluder drawn where it lowers
the class's probability most; (b) the total activation of a layer's map strongest on the
unoccluded image, per occluder position; (c) that map's deconvnet projection; (d) the
class's probability per position; (e) the most probable class per position, with a
legend. Maps (b), (d), (e) are drawn on the grid of occluder positions, each cell at its
occluder's centre. Panels (b) and (c) are left out when the sweep measured no layer.

Panel (d) is coloured from the map's own lowest to highest probability (a network that is
sure of a photo's class stays near 1 almost everywhere, and a fixed 0-1 scale would show
one colour); the colour bar's label gives that range and the unoccluded probability.
Panel (e) gives each class present in the row a distinct colour (:func:`jaxvis.plots.palette`)
and names it in the legend.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from jaxvis import plots

import matplotlib.pyplot as plt  # noqa: E402  (after jaxvis.plots has chosen the Agg backend)
from matplotlib.colors import ListedColormap  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.patches import Patch, Rectangle  # noqa: E402

from jaxvis.models import Model  # noqa: E402
from jaxvis.occlusion import OcclusionMaps  # noqa: E402

COLUMNS = {"a": "(a) occluder at the most\nsensitive position", "b": "(b) total activation,\nstrongest map",
           "c": "(c) deconvnet projection,\nstrongest map", "d": "(d) p({target})", "e": "(e) most probable class"}


def _extent(maps: OcclusionMaps, hw: tuple[int, int]) -> tuple[float, float, float, float]:
    """Image coordinates of the position grid, each cell centred on its occluder (cut at the border)."""
    def centres(starts, size, length):
        return (starts + np.minimum(starts + size, length)) / 2 - 0.5

    rows, cols = centres(maps.rows_P, maps.patch[0], hw[0]), centres(maps.cols_Q, maps.patch[1], hw[1])
    half_r = (rows[1] - rows[0]) / 2 if len(rows) > 1 else hw[0] / 2
    half_c = (cols[1] - cols[0]) / 2 if len(cols) > 1 else hw[1] / 2
    return cols[0] - half_c, cols[-1] + half_c, rows[-1] + half_r, rows[0] - half_r


def fig7(model: Model, x_NHWC, labels_N, maps: OcclusionMaps, class_names: Sequence[str], projections_NHWC=None,
         layer: str | None = None, fill=0.0, target: str = "true class", size: float = 2.0) -> Figure:
    """The Fig. 7 panels, one row per image, from the maps of :func:`jaxvis.occlusion.sweep`.

    Args:
      model: the network the maps were measured on (for its pixel normalization).
      x_NHWC: the normalized images; labels_N the class each sweep measured.
      maps: the sweep's result; with ``feature_NPQ``, panels (b) and (c) are drawn.
      class_names: the name of every class of the model (legend, row labels).
      projections_NHWC: panel (c), each image's strongest map of ``layer`` projected
        (:func:`jaxvis.figures.occlusion_fig7` computes them); needed with ``feature_NPQ``.
      layer: the layer of panels (b) and (c), for their labels.
      fill: the occluder's value in input space, as given to the sweep.
      target: what ``labels_N`` are, for panel (d)'s title: "true class", "predicted class".
    """
    x_NHWC, labels_N = np.asarray(x_NHWC), np.asarray(labels_N)
    if len(class_names) != model.num_classes:
        raise ValueError(f"{len(class_names)} class names for a model of {model.num_classes} classes")
    panels = "abcde" if maps.feature_NPQ is not None else "ade"
    if maps.feature_NPQ is not None and (projections_NHWC is None or len(projections_NHWC) != len(x_NHWC)):
        raise ValueError(f"the maps hold feature totals (panel b): give panel (c)'s projections, one per image "
                         f"({len(x_NHWC)}), got {None if projections_NHWC is None else len(projections_NHWC)}")
    hw = x_NHWC.shape[1:3]
    extent = _extent(maps, hw)
    fig, axes = plt.subplots(len(x_NHWC), len(panels), figsize=(len(panels) * size + 2.5, size * len(x_NHWC) + 0.8),
                             squeeze=False)
    for n, row in enumerate(axes):
        ax = dict(zip(panels, row))
        i, j = np.unravel_index(np.argmin(maps.prob_NPQ[n]), maps.prob_NPQ[n].shape)
        top, left = maps.rows_P[i], maps.cols_Q[j]
        occluded = x_NHWC[n].copy()
        occluded[top:top + maps.patch[0], left:left + maps.patch[1]] = fill
        plots.show(ax["a"], plots.pixels(model, occluded))
        ax["a"].add_patch(Rectangle((left - 0.5, top - 0.5), maps.patch[1], maps.patch[0], fill=False,
                                    edgecolor="red", linewidth=1))
        ax["a"].set_ylabel(plots.wrap(f"{plots.shorten(class_names[labels_N[n]], 28)}: p = {maps.base_prob_N[n]:.2f}",
                                      size, 8), fontsize=8)

        if "b" in ax:
            image = ax["b"].imshow(maps.feature_NPQ[n], cmap="viridis", extent=extent, interpolation="nearest")
            fig.colorbar(image, ax=ax["b"], fraction=0.046, pad=0.03).ax.tick_params(labelsize=6)
            plots.show(ax["c"], plots.centred(projections_NHWC[n]))
            ax["c"].set_xlabel(f"{layer}, map {int(maps.channel_N[n])}", fontsize=7)

        prob = maps.prob_NPQ[n]
        image = ax["d"].imshow(prob, cmap="jet", vmin=float(prob.min()), vmax=float(prob.max()), extent=extent,
                               interpolation="nearest")
        bar = fig.colorbar(image, ax=ax["d"], fraction=0.046, pad=0.03)
        bar.set_label(f"from its min {prob.min():.3g} to max {prob.max():.3g}\n(unoccluded {maps.base_prob_N[n]:.3g})",
                      fontsize=6)
        bar.ax.tick_params(labelsize=6)
        bar.formatter.set_useOffset(False)  # an offset label would sit on the panel's title

        present = np.unique(maps.label_NPQ[n])
        colours = plots.palette(len(present))
        index_PQ = np.searchsorted(present, maps.label_NPQ[n])
        ax["e"].imshow(index_PQ, cmap=ListedColormap(colours), vmin=-0.5, vmax=len(present) - 0.5, extent=extent,
                       interpolation="nearest")
        ax["e"].legend(handles=[Patch(color=colour, label=plots.shorten(class_names[c]))
                                for c, colour in zip(present, colours)],
                       fontsize=6, loc="center left", bbox_to_anchor=(1.0, 0.5), frameon=False,
                       ncol=1 + len(present) // 12)
        for k in "bde":
            if k in ax:
                ax[k].set_xlim(-0.5, hw[1] - 0.5)
                ax[k].set_ylim(hw[0] - 0.5, -0.5)
                ax[k].set_xticks([])
                ax[k].set_yticks([])
        if n == 0:
            for k, a in ax.items():
                a.set_title(COLUMNS[k].format(target=target), fontsize=8)
    fig.suptitle(f"Occlusion sensitivity (Zeiler & Fergus Fig. 7): {maps.patch[0]}x{maps.patch[1]} occluder, "
                 f"{model.name}", fontsize=10)
    fig.tight_layout()
    return fig
