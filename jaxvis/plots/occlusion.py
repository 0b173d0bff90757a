"""Zeiler & Fergus Fig. 7 (Sec. 4.2): what covering each part of an image does to the network.

For each image, one row of five panels: (a) the image with the occluder drawn where it
lowers the true-class probability most; (b) the total activation of ``layer``'s map
strongest on the unoccluded image, per occluder position; (c) that map's deconvnet
projection (:func:`jaxvis.project`); (d) the true-class probability per position;
(e) the most probable class per position, with a legend. Maps (b), (d), (e) are drawn
on the grid of occluder positions, each cell at its occluder's centre.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from jaxvis import plots

import matplotlib  # noqa: E402  (after jaxvis.plots has chosen the Agg backend)
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.patches import Patch, Rectangle  # noqa: E402

from jaxvis.models import Model, Params  # noqa: E402
from jaxvis.occlusion import OcclusionMaps, sweep  # noqa: E402
from jaxvis.project import Select, project  # noqa: E402

COLUMNS = ("(a) occluder at the most\nsensitive position", "(b) total activation,\nstrongest map",
           "(c) deconvnet projection,\nstrongest map", "(d) p(true class)", "(e) most probable class")


def _extent(maps: OcclusionMaps, hw: tuple[int, int]) -> tuple[float, float, float, float]:
    """Image coordinates of the position grid, each cell centred on its occluder (cut at the border)."""
    def centres(starts, size, length):
        return (starts + np.minimum(starts + size, length)) / 2 - 0.5

    rows, cols = centres(maps.rows_P, maps.patch[0], hw[0]), centres(maps.cols_Q, maps.patch[1], hw[1])
    half_r = (rows[1] - rows[0]) / 2 if len(rows) > 1 else hw[0] / 2
    half_c = (cols[1] - cols[0]) / 2 if len(cols) > 1 else hw[1] / 2
    return cols[0] - half_c, cols[-1] + half_c, rows[-1] + half_r, rows[0] - half_r


def fig7(model: Model, params: Params, x_NHWC, labels_N, maps: OcclusionMaps, layer: str, fill=0.0,
         class_names=None, size: float = 2.0) -> Figure:
    """The Fig. 7 panels, one row per image, from the maps of :func:`jaxvis.occlusion.sweep`.

    Args:
      model, params: the network the maps were measured on.
      x_NHWC: the normalized images; labels_N their true classes.
      maps: the sweep's result, measured with ``layer`` (its ``feature_NPQ`` is needed).
      layer: the layer whose strongest map (b) and (c) show.
      fill: the occluder's value in input space, as given to the sweep.
      class_names: names of the classes for the legend (default: their indices).
    """
    if maps.feature_NPQ is None:
        raise ValueError("the maps hold no feature totals (panel b): run sweep(..., layer=...) first")
    x_NHWC, labels_N = np.asarray(x_NHWC), np.asarray(labels_N)
    hw = x_NHWC.shape[1:3]
    names = class_names or [str(c) for c in range(model.num_classes)]
    extent = _extent(maps, hw)
    colours = matplotlib.colormaps["tab20" if model.num_classes > 10 else "tab10"]
    fig, axes = plt.subplots(len(x_NHWC), 5, figsize=(5 * size + 1.5, size * len(x_NHWC) + 0.8),
                                   squeeze=False)
    for n, row in enumerate(axes):
        i, j = np.unravel_index(np.argmin(maps.prob_NPQ[n]), maps.prob_NPQ[n].shape)
        top, left = maps.rows_P[i], maps.cols_Q[j]
        occluded = x_NHWC[n].copy()
        occluded[top:top + maps.patch[0], left:left + maps.patch[1]] = fill
        plots.show(row[0], plots.pixels(model, occluded), COLUMNS[0] if n == 0 else None)
        row[0].add_patch(Rectangle((left - 0.5, top - 0.5), maps.patch[1], maps.patch[0], fill=False,
                                   edgecolor="red", linewidth=1))
        row[0].set_ylabel(f"{names[labels_N[n]]}: p = {maps.base_prob_N[n]:.2f}", fontsize=8)

        image = row[1].imshow(maps.feature_NPQ[n], cmap="viridis", extent=extent, interpolation="nearest")
        fig.colorbar(image, ax=row[1], fraction=0.046, pad=0.03)

        projection = project(model, params, x_NHWC[n], layer, Select.strongest(int(maps.channel_N[n])))
        plots.show(row[2], plots.centred(projection), COLUMNS[2] if n == 0 else None)
        row[2].set_xlabel(f"{layer}, map {int(maps.channel_N[n])}", fontsize=7)

        image = row[3].imshow(maps.prob_NPQ[n], cmap="jet", vmin=0.0, vmax=1.0, extent=extent,
                              interpolation="nearest")
        fig.colorbar(image, ax=row[3], fraction=0.046, pad=0.03)

        present = np.unique(maps.label_NPQ[n])
        row[4].imshow(colours(maps.label_NPQ[n] % colours.N), extent=extent, interpolation="nearest")
        row[4].legend(handles=[Patch(color=colours(c % colours.N), label=names[c]) for c in present],
                      fontsize=6, loc="center left", bbox_to_anchor=(1.0, 0.5), frameon=False)
        for k in (1, 3, 4):
            row[k].set_xlim(-0.5, hw[1] - 0.5)
            row[k].set_ylim(hw[0] - 0.5, -0.5)
            row[k].set_xticks([])
            row[k].set_yticks([])
            if n == 0:
                row[k].set_title(COLUMNS[k], fontsize=8)
    fig.suptitle(f"Occlusion sensitivity (Zeiler & Fergus Fig. 7): {maps.patch[0]}x{maps.patch[1]} occluder, "
                 f"{model.name}", fontsize=10)
    fig.tight_layout()
    return fig


def _last_spatial_relu(model: Model) -> str:
    """The deepest rectified layer with spatial maps (the paper shows layer 5, the last conv)."""
    return [name for name in model.fields if model.layer(name).kind == "relu"][-1]


def demo_figures(model: Model, params: Params, images_NHWC, labels_N, out_dir) -> list[Path]:
    """Fig. 7 for a few (MNIST-sized) images: an incremental sweep with a square a fifth of
    the image wide at stride 1, grey (mean) fill, the deepest spatial ReLU's strongest map."""
    layer = _last_spatial_relu(model)
    patch = max(2, model.input_shape[0] // 5)
    maps = sweep(model, params, images_NHWC, labels_N, patch, 1, layer=layer, method="incremental")
    path = Path(out_dir) / "occlusion_fig7.png"
    plots.save(fig7(model, params, images_NHWC, labels_N, maps, layer), path)
    return [path]
