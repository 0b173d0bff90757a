"""Figures that run a method, then draw it: the step between jaxvis's methods and
:mod:`jaxvis.plots` (whose functions take arrays only). The scripts, the demo and the
reports call these.

- :func:`strongest_windows`: where each image's strongest unit of a map is, as its
  receptive field's window (the single-image deconvnet view crops to it).
- :func:`strongest_figure`: Zeiler & Fergus's single-image view: the strongest map of
  each layer projected alone and cropped to the projected unit's receptive field.
- :func:`occlusion_fig7`: Fig. 7 from a sweep's maps (projects panel (c)).
- :func:`occlusion_demo`, :func:`saliency_demo`: the demo's occlusion and saliency figures.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import jax
import numpy as np
from matplotlib.figure import Figure

from jaxvis import plots, saliency, synthesis
from jaxvis.models import Model, Params
from jaxvis.occlusion import OcclusionMaps, sweep
from jaxvis.plots import deconvnet as deconvnet_plots
from jaxvis.plots import occlusion as occlusion_plots
from jaxvis.plots import saliency as saliency_plots
from jaxvis.project import Select, project_batch, project_strongest


def strongest_windows(model: Model, params: Params, x_NHWC, layer: str, channels_N) -> np.ndarray:
    """``(N, 4)`` windows (top, left, height, width) of the receptive field of each image's
    strongest unit in map ``channels_N[n]`` of ``layer`` (the unit ``Select.strongest``
    projects; they may reach past the image)."""
    model.check_layer(layer, spatial=True)
    _, trace = model.apply(params, x_NHWC, until=layer)
    act_NHWC = np.asarray(trace.activations[layer])
    chosen_NHW = act_NHWC[np.arange(len(act_NHWC)), :, :, np.asarray(channels_N)]
    flat = chosen_NHW.reshape(len(act_NHWC), -1).argmax(axis=1)
    rows, cols = np.unravel_index(flat, chosen_NHW.shape[1:])
    field = model.receptive_field(layer)
    return np.asarray([field.window(r, c) for r, c in zip(rows, cols)], np.int64)


def strongest_figure(model: Model, params: Params, x_NHWC, layers: Sequence[str], labels: Sequence[str],
                     title: str, rules: Sequence[str] | None = None, crop: bool = True) -> Figure:
    """Each image's strongest map of each layer projected alone (columns: layers, or with
    ``rules`` one layer under each ReLU backward rule), each cropped to the projected
    unit's receptive field (unless not ``crop``)."""
    columns = {(layer, rule): f"{layer} ({rule})" if rules else layer
               for layer in layers for rule in (rules or ["deconvnet"])}
    projections, windows = {}, {}
    for (layer, rule), name in columns.items():
        found, channels = project_strongest(model, params, x_NHWC, layer, rule)
        projections[name] = np.asarray(found)
        windows[name] = strongest_windows(model, params, x_NHWC, layer, channels)
    return deconvnet_plots.strongest_per_layer(model, x_NHWC, projections, labels, title,
                                               windows if crop else None)


def occlusion_fig7(model: Model, params: Params, x_NHWC, labels_N, maps: OcclusionMaps, layer: str | None,
                   class_names: Sequence[str], fill=0.0, target: str = "true class") -> Figure:
    """Fig. 7 (:func:`jaxvis.plots.occlusion.fig7`) of a sweep's maps, projecting panel
    (c): each image's strongest map of ``layer`` (the one panel (b) totals)."""
    projections = None
    if maps.feature_NPQ is not None:
        projections = np.asarray(project_batch(model, params, x_NHWC, layer, Select.strongest(maps.channel_N)))
    return occlusion_plots.fig7(model, x_NHWC, labels_N, maps, class_names, projections, layer, fill, target)


def last_spatial_relu(model: Model) -> str:
    """The deepest rectified layer with spatial maps (the paper shows layer 5, the last conv)."""
    return [name for name in model.fields if model.layer(name).rectifier][-1]


def occlusion_demo(model: Model, params: Params, images_NHWC, labels_N, out_dir,
                   class_names: Sequence[str] | None = None) -> list[Path]:
    """Fig. 7 for a few (MNIST-sized) normalized images: an incremental sweep with a
    square a fifth of the image wide at stride 1, grey (mean) fill, the deepest spatial
    ReLU's strongest map."""
    layer = last_spatial_relu(model)
    patch = max(2, model.input_shape[0] // 5)
    maps = sweep(model, params, images_NHWC, labels_N, patch, 1, layer=layer, method="incremental")
    names = class_names or [str(c) for c in range(model.num_classes)]
    path = Path(out_dir) / "occlusion_fig7.png"
    plots.save(occlusion_fig7(model, params, images_NHWC, labels_N, maps, layer, names), path)
    return [path]


def saliency_demo(model: Model, params: Params, images_NHWC, labels_N, out_dir,
                  class_names: Sequence[str] | None = None) -> list[Path]:
    """Saliency maps of each method for the given normalized images, and the class model
    of every class (the ``simonyan`` preset). Returns the PNG paths."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    labels_N = np.asarray(labels_N)
    names = class_names or [str(c) for c in range(model.num_classes)]
    maps = saliency.method_maps(model, params, images_NHWC, labels_N)
    boxes = jax.vmap(saliency.localization_box)(maps["gradient"])
    paths = [out_dir / "saliency_methods.png", out_dir / "class_models.png"]
    plots.save(saliency_plots.methods_grid(model, images_NHWC, maps, [names[c] for c in labels_N], boxes), paths[0])
    run, probs = synthesis.class_models(model, params)
    plots.save(saliency_plots.class_models_grid(model, {"simonyan": run.images}, {"simonyan": probs}, names),
               paths[1])
    return paths
