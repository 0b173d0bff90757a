"""One HTML page that explains what a network sees in each photo.

:func:`write` composes the library's methods into sections, one set per photo, and writes
``index.html`` with its PNG figures under one folder:

- ``predictions``: the top-k classes and their probabilities;
- ``projections``: the strongest map of every rectified conv and pooling layer projected
  alone to pixels (deconvnet or guided rule; Zeiler & Fergus Sec. 2.1, single-image view),
  whole and zoomed on the strongest unit's receptive field;
- ``transforms``: the photo rotated, shifted, zoomed and partly covered by a grey square
  (Sec. 4.2-4.3): the top-1 class and its probability per variant, and each variant's
  projections;
- ``occlusion``: the occlusion heat map (Captum's attribution of the predicted class,
  optionally smoothed) over the photo, and the Fig. 7 panels (Sec. 4.2);
- ``saliency``: gradient saliency (Simonyan et al.), guided backpropagation, Grad-CAM and
  guided Grad-CAM of the predicted class;
- ``class_model`` and ``inversion`` (optional): the class model of the predicted (or a
  named) class (Simonyan, Yosinski presets) and feature inversion (Mahendran & Vedaldi).

The network is a jaxvis model or any JAX network through :func:`jaxvis.wrap`; a section
a network cannot have (:func:`unavailable`) is left out, and the page says why.

Every figure and every section's record is written atomically, and the page is rewritten
after each section, so a run stopped by an error keeps what it wrote. A section whose
record holds the same settings (network, photo content, the section's options) and whose
figures exist is not computed again: a rerun resumes.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import html
import io
import re
from collections.abc import Callable, Sequence
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from PIL import Image
from tqdm import tqdm

from jaxvis import _checks, _io, classes, figures, images, models, occlusion, plots, saliency, synthesis, topk
from jaxvis.analysis import invariance
from jaxvis.models import Model, Params
from jaxvis.plots import occlusion as occlusion_plots
from jaxvis.plots import report as report_plots
from jaxvis.plots import saliency as saliency_plots
from jaxvis.project import Select, project_strongest, strongest_map
from jaxvis.wrap import Wrapped

SECTIONS = ("predictions", "projections", "transforms", "occlusion", "saliency", "class_model", "inversion")
TITLES = {"predictions": "Top predictions", "projections": "Strongest map of each layer, projected",
          "transforms": "Transformed photo", "occlusion": "Occlusion sensitivity",
          "saliency": "Saliency maps", "class_model": "Class model", "inversion": "Feature inversion"}
DEFAULT_SECTIONS = SECTIONS[:5]
RULES = ("deconvnet", "guided")
OCCLUSION_METHODS = occlusion.METHODS


@dataclasses.dataclass(frozen=True)
class Settings:
    """What the report computes.

    Attributes:
      sections: which sections, in page order (a subset of :data:`SECTIONS`).
      rule: the ReLU rule of the projections: "deconvnet" or "guided".
      layers: the layers projected; None: every rectified conv and pooling layer.
      transform_layers: the layers projected for each transformed photo; None: the three
        deepest of ``layers``.
      top: how many classes the predictions table lists.
      patch, stride: the occluder's side and step, in pixels.
      occlusion_method: "incremental" (exact, faster) or "full" re-inference.
      smooth: standard deviation in pixels of a Gaussian blur of the heat map (0: none).
      target: the class of the class model (None: each photo's predicted class).
      presets: the class-model presets (:data:`jaxvis.synthesis.PRESETS`).
      invert: the layers to invert from.
      synthesis_steps: steps of every class model and inversion (None: the preset's).
      note: a line shown at the top of the page (e.g. why some sections are off).
    """

    sections: tuple[str, ...] = DEFAULT_SECTIONS
    rule: str = "deconvnet"
    layers: tuple[str, ...] | None = None
    transform_layers: tuple[str, ...] | None = None
    top: int = 5
    patch: int = 32
    stride: int = 16
    occlusion_method: str = "incremental"
    smooth: float = 0.0
    target: int | None = None
    presets: tuple[str, ...] = ("simonyan",)
    invert: tuple[str, ...] = ()
    synthesis_steps: int | None = None
    note: str = ""

    def __post_init__(self):
        _checks.annotated_fields(self)


@dataclasses.dataclass(frozen=True)
class Network:
    """The network a report explains.

    Attributes:
      model, params: the network: a jaxvis model, or any JAX network through
        :func:`jaxvis.wrap` (see :func:`unavailable` for what such a page leaves out).
      source: where the weights came from, shown on the page and part of every
        section's settings (a changed source recomputes everything).
      random: the weights are random (the page says so prominently).
      names: the names of its classes (:class:`jaxvis.classes.ClassNames`).
    """

    model: Model | Wrapped
    params: Params
    source: str
    random: bool
    names: classes.ClassNames


def random_network(name: str, input_size=None, seed: int = 0, preset: str = "torchvision") -> Network:
    """A zoo model with random He-normal weights (``model.init``) in torchvision's layout,
    normalizing as ``preset`` says, named as :func:`jaxvis.classes.for_model` names its outputs."""
    model = models.build(name, **({} if input_size is None else {"input_size": input_size}))
    if model.input_shape[-1] == 3:
        model = images.for_preset(model, preset)
    source = f"random He-normal weights (seed {seed}) in torchvision's layout, no pretrained file"
    return Network(model, model.init(jax.random.key(seed)), source, True, classes.for_model(model))


def spatial_layers(model: Model) -> tuple[str, ...]:
    """Every rectified conv layer and pooling layer with spatial maps, in network order."""
    return tuple(n for n in model.fields if model.layer(n).rectifier or model.layer(n).pooling)


def unavailable(model: Model | Wrapped, settings: Settings) -> dict[str, str]:
    """The sections ``model`` cannot have, each with the sentence the page gives instead:
    projections need a rectified or pooling layer with spatial maps and the rule; the
    occlusion panels a ReLU with spatial maps and the deconvnet rule; saliency a convolution (Grad-CAM) and the
    guided rule. A wrapped network refuses a rule where it has activations the rule does
    not define (:meth:`jaxvis.wrap.Wrapped.check_rule`)."""
    def refused(rule: str) -> str | None:
        try:
            if isinstance(model, Wrapped):
                model.check_rule(rule)
        except ValueError as err:
            return str(err)
        return None

    missing = {}
    projected = refused(settings.rule) or (None if _layers(model, settings) else
                                           f"{model.name} has no rectified or pooling layer with spatial maps")
    if projected:
        missing["projections"] = missing["transforms"] = projected
    fig7 = refused("deconvnet") or (None if any(model.layer(n).rectifier for n in model.fields) else
                                    f"{model.name} has no ReLU with spatial maps to show in the Fig. 7 panels")
    if fig7:
        missing["occlusion"] = fig7
    if not any(model.layer(n).convolution for n in model.fields):
        missing["saliency"] = f"{model.name} has no convolution with spatial maps for Grad-CAM"
    elif refused("guided"):
        missing["saliency"] = refused("guided")
    return missing


def check(network: Network, settings: Settings) -> None:
    """Raise a ``ValueError`` for a setting the network cannot take."""
    model = network.model
    for section in settings.sections:
        _checks.choice("report section", section, SECTIONS)
    _checks.choice("projection rule", settings.rule, RULES)
    _checks.choice("occlusion method", settings.occlusion_method, OCCLUSION_METHODS)
    for layer in (*_layers(model, settings), *(settings.transform_layers or ())):
        model.check_layer(layer, spatial=True)
    for layer in settings.invert:
        model.check_layer(layer)
    _checks.count("top", settings.top)
    if settings.top > model.num_classes:
        raise ValueError(f"top must be at most the {model.num_classes} classes of {model.name}, got {settings.top}")
    side = min(model.input_shape[:2])
    _checks.count("patch", settings.patch)
    _checks.count("stride", settings.stride)
    if settings.patch > side:
        raise ValueError(f"the occluder ({settings.patch} px) must fit the {side} px input, got patch={settings.patch}")
    _checks.positive("smooth", settings.smooth, strict=False)
    if settings.target is not None:
        _checks.index("target class", settings.target, model.num_classes)
    for preset in settings.presets:
        _checks.choice("class-model preset", preset, synthesis.PRESETS)
    _checks.count("synthesis_steps", settings.synthesis_steps, optional=True)
    if len(network.names) != model.num_classes:
        raise ValueError(f"{model.name} has {model.num_classes} classes but {len(network.names)} names were given")


def _layers(model: Model, settings: Settings) -> tuple[str, ...]:
    return spatial_layers(model) if settings.layers is None else tuple(settings.layers)


def _transform_layers(model: Model, settings: Settings) -> tuple[str, ...]:
    if settings.transform_layers is not None:
        return tuple(settings.transform_layers)
    return tuple(sorted(_layers(model, settings), key=model.names.index)[-3:])


# ---------------------------------------------------------------------------------------
# Computation


def strongest_projections(model: Model, params: Params, x_NHWC, layers: tuple[str, ...], rule: str = "deconvnet",
                          shared_from: float = 0.5):
    """Per image and layer, the strongest unit of the layer's strongest map projected alone.

    Each equals ``project(model, params, x, layer, Select.strongest(c), rule)``, computed
    the cheaper of two ways per layer:

    - a layer whose receptive field is smaller than ``shared_from`` times the input's
      shorter side projects as the Fig. 2 sheets do (:func:`jaxvis.topk.project_top_k`):
      on its unit's receptive field only (exact: outside it a projection is zero), so a
      layer-1 unit costs a few pixels, not a backward pass through the whole network;
    - the deeper layers, whose fields cover most of the image anyway, share one forward
      pass to the deepest of them and run one backward pass each, vmapped, in one program;
      so do all layers of a wrapped model (:func:`jaxvis.wrap`), which has no layer tuple
      to cut down to a field.

    Returns:
      ``(projections_NLHWC, channels_NL, rows_NL, cols_NL)``: the projections, the
      strongest map of each layer and the position of its strongest unit.
    """
    x_NHWC = np.asarray(x_NHWC)
    n, (h, w, depth) = len(x_NHWC), model.input_shape
    shared = tuple(layer for layer in layers
                   if isinstance(model, Wrapped) or max(model.fields[layer].size) >= shared_from * min(h, w))
    windowed = [layer for layer in layers if layer not in shared]
    projections = np.zeros((n, len(layers), h, w, depth), np.float32)
    where = np.zeros((3, n, len(layers)), np.int32)
    for i, x_1HWC in enumerate(x_NHWC[:, None]):
        if shared:
            proj_LHWC, *found = (np.asarray(a) for a in _strongest_shared(model, params, x_1HWC[0], shared, rule))
            at = [layers.index(layer) for layer in shared]
            projections[i, at] = proj_LHWC
            where[:, i, at] = found
        if not windowed:
            continue
        tops = topk.top_k(model, params, [x_1HWC], windowed, k=1, one_per_image=True)
        for layer in windowed:
            j = layers.index(layer)
            top = tops[layer] if isinstance(tops, dict) else tops
            channel = int(np.argmax(np.asarray(top.value)[:, 0]))  # the first strongest, as strongest_map
            patches = topk.project_top_k(model, params, x_1HWC, top, layer, maps=[channel], rule=rule)
            (t, l, fh, fw), crop = patches.window[0, 0], patches.projection[0, 0]
            rows, cols = slice(max(t, 0), min(t + fh, h)), slice(max(l, 0), min(l + fw, w))
            projections[i, j, rows, cols] = crop[rows.start - t:rows.stop - t, cols.start - l:cols.stop - l]
            where[:, i, j] = channel, int(top.row[channel, 0]), int(top.col[channel, 0])
    return projections, *where


@functools.partial(jax.jit, static_argnames=("model", "layers", "rule"))
def _strongest_shared(model: Model, params: Params, x_HWC, layers: tuple[str, ...], rule: str):
    """The strongest unit of each layer's strongest map, projected alone: one forward pass
    to the deepest layer, one backward pass per layer (vmapped). Returns
    ``(projections_LHWC, channels_L, rows_L, cols_L)``."""
    deepest = max(layers, key=model.names.index)

    def outputs(x):
        trace = model.apply(params, x[None], rule=rule, until=deepest)[1]
        return tuple(trace.activations[layer][0] for layer in layers)

    acts, pullback = jax.vjp(outputs, x_HWC)
    channels = [strongest_map(a) for a in acts]
    kept = [a * Select.strongest(c).mask(a) for a, c in zip(acts, channels)]
    # projection j sends layer j's kept unit down and nothing from the other layers
    signals = tuple(jnp.stack([k if i == j else jnp.zeros_like(k) for j in range(len(layers))])
                    for i, k in enumerate(kept))
    (projections,) = jax.vmap(pullback)(signals)
    units = [jnp.unravel_index(jnp.argmax(a[:, :, c]), a.shape[:2]) for a, c in zip(acts, channels)]
    return (projections, jnp.stack(channels), jnp.stack([r for r, _ in units]), jnp.stack([c for _, c in units]))


def variants(model: Model) -> dict[str, Callable]:
    """The photo's variants, each a function of one normalized image (fill 0: the mean
    colour): the seeds' rotations and grey squares, and Fig. 5's shifts and zooms."""
    h, w, _ = model.input_shape
    side, shift = max(1, min(h, w) // 4), max(1, min(h, w) // 8)
    top, left = (h - side) // 2, (w - side) // 2

    def moved(family, amount):
        return lambda x: invariance.transform(x, family, amount)

    return {
        "original": lambda x: x,
        "rotated 90°": moved("rotate", 90.0),
        "rotated 180°": moved("rotate", 180.0),
        f"grey {side}px square, top-left corner": lambda x: x.at[:side, :side].set(0.0),
        f"grey {side}px square, centre": lambda x: x.at[top:top + side, left:left + side].set(0.0),
        f"shifted {shift}px right": moved("translate_h", float(shift)),
        f"shifted {shift}px down": moved("translate_v", float(shift)),
        "zoomed in 1.25x": moved("scale", 1.25),
        "zoomed out 0.8x": moved("scale", 0.8),
    }


def transformed(model: Model, x_HWC) -> tuple[list[str], jax.Array]:
    """The names of the photo's :func:`variants` and the variants, ``(V, H, W, C)``."""
    fns = variants(model)
    return list(fns), jnp.stack([fn(jnp.asarray(x_HWC)) for fn in fns.values()])


@functools.partial(jax.jit, static_argnames="model")
def probabilities(model: Model, params: Params, x_NHWC) -> jax.Array:
    """Softmax of the logits: ``(N, classes)``."""
    return jax.nn.softmax(model.apply(params, x_NHWC)[0], axis=-1)


# ---------------------------------------------------------------------------------------
# Sections: each returns its HTML (figures as {name} placeholders), figures and numbers


@dataclasses.dataclass
class _Part:
    html: str
    figures: dict  # name -> (Figure, alt text)
    data: dict


def _table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _predictions(network: Network, settings: Settings, x_HWC, probs_K) -> _Part:
    top = network.names.decode(probs_K, settings.top)
    rows = [(i + 1, name, c, f"{p:.4f}") for i, (c, name, p) in enumerate(top)]
    text = _table(("rank", "class", "index", "probability"), rows)
    return _Part(text, {}, {"top": top})


def _projections(network: Network, settings: Settings, x_HWC, probs_K) -> _Part:
    model, layers = network.model, _layers(network.model, settings)
    proj, channels, rows, cols = (np.asarray(a[0]) for a in strongest_projections(
        model, network.params, jnp.asarray(x_HWC)[None], layers, settings.rule))
    windows = [model.fields[n].window(int(r), int(c)) for n, r, c in zip(layers, rows, cols)]
    fig = report_plots.projections(plots.pixels(model, x_HWC), [plots.centred(p) for p in proj], layers,
                                   channels, windows, settings.rule)
    alt = (f"{settings.rule} projections of the strongest map of {len(layers)} layers ({', '.join(layers)}), "
           "each whole and zoomed on its receptive field")
    text = (f"<p>Rule: <b>{settings.rule}</b>. Each layer's strongest map keeps only its strongest unit; the "
            "projection is shown over the whole image (grey is zero) and zoomed on that unit's receptive "
            "field (red box).</p>{projections}")
    data = {"layers": list(layers), "channels": channels.tolist(), "rows": rows.tolist(), "cols": cols.tolist(),
            "largest": np.abs(proj).max(axis=(1, 2, 3)).tolist()}
    return _Part(text, {"projections": (fig, alt)}, data)


def _transforms(network: Network, settings: Settings, x_HWC, probs_K) -> _Part:
    model, layers = network.model, _transform_layers(network.model, settings)
    names, x_VHWC = transformed(model, x_HWC)
    # one variant per call: the programs compiled for the photo itself serve (the same
    # shapes), and the projections' too when the layers are the same
    probs_VK = np.concatenate([probabilities(model, network.params, x[None]) for x in x_VHWC])
    original = int(np.argmax(probs_VK[0]))
    rows, table = [], []
    for name, p in zip(names, probs_VK):
        top1 = int(np.argmax(p))
        table.append({"variant": name, "class": top1, "name": network.names.name(top1), "probability": float(p[top1]),
                      "original_class_probability": float(p[original])})
        rows.append((name, network.names.name(top1), f"{p[top1]:.4f}", f"{p[original]:.4f}"))
    proj = np.concatenate([strongest_projections(model, network.params, x[None], layers, settings.rule)[0]
                           for x in x_VHWC])
    fig = report_plots.variants(names, [plots.pixels(model, x) for x in np.asarray(x_VHWC)],
                                [[plots.centred(p) for p in per] for per in proj], layers, settings.rule)
    original_name = html.escape(network.names.name(original))
    text = (_table(("variant", "top-1 class", "probability", f"p({network.names.name(original)})"), rows)
            + f"<p>Grey is the dataset's mean colour. Last column: the probability of the original photo's "
            f"top-1 class ({original_name}). Projections ({settings.rule}) of each variant:</p>" "{variants}")
    alt = f"each transformed photo and its {settings.rule} projections at {', '.join(layers)}"
    return _Part(text, {"variants": (fig, alt)}, {"table": table, "layers": list(layers)})


def _occlusion(network: Network, settings: Settings, x_HWC, probs_K) -> _Part:
    model = network.model
    label = int(np.argmax(probs_K))
    layer = figures.last_spatial_relu(model)
    x_1HWC = jnp.asarray(x_HWC)[None]
    method = "full" if isinstance(model, Wrapped) else settings.occlusion_method  # incremental needs a tuple
    maps = occlusion.sweep(model, network.params, x_1HWC, [label], settings.patch, settings.stride, layer=layer,
                           method=method)
    heat_HW = maps.attribution_NHW[0]
    if settings.smooth > 0:
        heat_HW = np.asarray(synthesis.blur(jnp.asarray(heat_HW)[..., None], settings.smooth))[..., 0]
    name = network.names.name(label)
    heat = report_plots.heat_map(plots.pixels(model, x_HWC), heat_HW,
                                 f"drop of p({name}) when covered ({settings.patch}px square, stride {settings.stride}"
                                 + (f", smoothed {settings.smooth}px)" if settings.smooth else ")"))
    projection = project_strongest(model, network.params, x_1HWC, layer)[0]  # panel (c): the map (b) totals
    fig7 = occlusion_plots.fig7(model, x_1HWC, [label], maps, network.names.names, np.asarray(projection), layer,
                                target="predicted class")
    worst = occlusion.summary(maps)
    data = {"label": label, "drop": float(worst["drop"][0]), "row": float(worst["row"][0]),
            "col": float(worst["col"][0]), "positions": int(maps.prob_NPQ[0].size)}
    text = (f"<p>A grey (mean colour) {settings.patch}px square at stride {settings.stride} "
            f"({data['positions']} positions, {method} inference). Covering the part centred at "
            f"row {data['row']:.0f}, column {data['col']:.0f} lowers p({html.escape(name)}) most, by "
            f"{data['drop']:.3f}.</p>" "{heat}{fig7}")
    return _Part(text, {"heat": (heat, f"occlusion heat map of {name} over the photo"),
                        "fig7": (fig7, f"Fig. 7 panels: occluder, feature map of {layer}, projection, "
                                       f"p({name}) and most probable class per position")}, data)


def _saliency(network: Network, settings: Settings, x_HWC, probs_K) -> _Part:
    model, params = network.model, network.params
    label = int(np.argmax(probs_K))
    x_1HWC = jnp.asarray(x_HWC)[None]
    attributions = {  # maps (H, W) and signed attributions (H, W, C)
        "gradient (Simonyan)": saliency.saliency(model, params, x_1HWC, label)[0],
        "guided backprop": saliency.gradients(model, params, x_1HWC, label, "guided")[0],
        f"Grad-CAM ({saliency.cam_layer(model)})": saliency.grad_cam(model, params, x_1HWC, label,
                                                                    upsample="bilinear")[0],
        "guided Grad-CAM": saliency.guided_grad_cam(model, params, x_1HWC, label)[0]}
    maps = {method: plots.centred(a) if a.ndim == 3 else saliency_plots.scaled(a) for method, a in attributions.items()}
    peaks = {}  # where each map (the largest magnitude over channels) is largest, and its value
    for method, a in attributions.items():
        map_HW = np.asarray(saliency.to_map(a) if a.ndim == 3 else a)
        row, col = np.unravel_index(int(np.argmax(map_HW)), map_HW.shape)
        peaks[method] = [int(row), int(col), float(map_HW[row, col])]
    name = network.names.name(label)
    fig = report_plots.row(plots.pixels(model, x_HWC), maps, f"saliency of {name}")
    text = f"<p>Of the predicted class, {html.escape(name)} (from the gradient of its logit).</p>" "{saliency}"
    return _Part(text, {"saliency": (fig, f"{', '.join(maps)} of {name}")},
                 {"label": label, "methods": list(maps), "peaks": peaks})


def _target(settings: Settings, probs_K) -> int:
    return int(np.argmax(probs_K)) if settings.target is None else settings.target


def _synthesis_overrides(settings: Settings) -> dict:
    return {} if settings.synthesis_steps is None else {"steps": settings.synthesis_steps}


def _class_model(network: Network, settings: Settings, x_HWC, probs_K) -> _Part:
    model, target = network.model, _target(settings, probs_K)
    images, probs = {}, {}
    for preset in settings.presets:
        run, p = synthesis.class_models(model, network.params, [target], preset, init_std=1.0,
                                        **_synthesis_overrides(settings))
        images[preset], probs[preset] = np.asarray(run.images), np.asarray(p)
    name = network.names.name(target)
    fig = saliency_plots.class_models_grid(model, images, probs, [name])
    text = (f"<p>An image the network scores as {html.escape(name)}"
            f"{'' if settings.target is not None else ' (the predicted class)'}, per preset.</p>" "{class_model}")
    data = {"class": target, "probability": {k: float(v[0]) for k, v in probs.items()}}
    return _Part(text, {"class_model": (fig, f"class models of {name}: {', '.join(settings.presets)}")}, data)


def _inversion(network: Network, settings: Settings, x_HWC, probs_K) -> _Part:
    model = network.model
    recon, errors = {}, {}
    for layer in settings.invert:
        run, err = synthesis.invert(model, network.params, jnp.asarray(x_HWC)[None], layer,
                                    **_synthesis_overrides(settings))
        recon[layer], errors[layer] = np.asarray(run.images), np.asarray(err)
    fig = saliency_plots.inversion_grid(model, np.asarray(x_HWC)[None], recon, errors)
    text = "<p>The photo reconstructed from its code at each layer.</p>{inversion}"
    return _Part(text, {"inversion": (fig, f"reconstructions from {', '.join(settings.invert)}")},
                 {"errors": {k: float(v[0]) for k, v in errors.items()}})


_COMPUTE = {"predictions": _predictions, "projections": _projections, "transforms": _transforms,
            "occlusion": _occlusion, "saliency": _saliency, "class_model": _class_model, "inversion": _inversion}
# The settings each section depends on (besides the network and the photo).
_DEPENDS = {"predictions": ("top",), "projections": ("rule", "layers"),
            "transforms": ("rule", "layers", "transform_layers"),
            "occlusion": ("patch", "stride", "occlusion_method", "smooth"), "saliency": (),
            "class_model": ("target", "presets", "synthesis_steps"), "inversion": ("invert", "synthesis_steps")}


# ---------------------------------------------------------------------------------------
# Files and the page


def _png_bytes(fig) -> bytes:
    buffer = io.BytesIO()
    plots.save(fig, buffer)
    return buffer.getvalue()


def _img(folder: Path, relative: str, alt: str) -> str:
    with Image.open(folder / relative) as image:
        width, height = image.size
    return (f'<img src="{html.escape(relative)}" alt="{html.escape(alt)}" width="{width}" height="{height}" '
            f'loading="eager">')


def photo_ids(paths: Sequence[str]) -> list[str]:
    """A folder name per photo: its file name's stem made safe, numbered where two agree."""
    ids, seen = [], {}
    for path in paths:
        stem = re.sub(r"[^A-Za-z0-9_-]+", "-", Path(str(path)).stem).strip("-") or "photo"
        seen[stem] = seen.get(stem, 0) + 1
        ids.append(stem if seen[stem] == 1 else f"{stem}-{seen[stem]}")
    return ids


def _section_settings(network: Network, settings: Settings, section: str, digest: str) -> dict:
    chosen = {k: getattr(settings, k) for k in _DEPENDS[section]}
    return {"section": section, "model": network.model.name, "weights": network.source, "photo": digest,
            **{k: list(v) if isinstance(v, tuple) else v for k, v in chosen.items()}}


def _done(record: Path, wanted: dict, folder: Path):
    """The record of a finished section with these settings whose figures exist, or None."""
    try:
        result = _io.read_result(record, wanted)
    except ValueError:  # other settings or a damaged record: compute it again
        return None
    if result is None or not all((folder / f).is_file() for f in result["files"]):
        return None
    return result


def _run_section(network: Network, settings: Settings, section: str, folder: Path, photo_id: str, x_HWC, probs_K,
                 digest: str) -> dict:
    record = folder / photo_id / f"{section}.json"
    wanted = _section_settings(network, settings, section, digest)
    done = _done(record, wanted, folder)
    if done is not None:
        return done
    part = _COMPUTE[section](network, settings, x_HWC, probs_K)
    images, files = {}, []
    for name, (fig, alt) in part.figures.items():
        relative = f"{photo_id}/{section}-{name}.png"
        _io.write_atomically(folder / relative, lambda f, data=_png_bytes(fig): f.write(data))
        images[name] = _img(folder, relative, alt)
        files.append(relative)
    text = part.html
    for name, tag in images.items():
        text = text.replace(f"{{{name}}}", tag)
    result = {"html": text, "files": files, "data": part.data}
    _io.record_result(record, wanted, result)
    return result


_STYLE = """
body { font-family: sans-serif; margin: 1.5em auto; padding: 0 1em; max-width: 1400px; color: #222; }
h1 { font-size: 1.5em; } h2 { border-top: 2px solid #888; padding-top: .6em; margin-top: 2em; }
.warning { background: #c00; color: #fff; padding: .8em 1em; font-size: 1.2em; font-weight: bold; }
.note { background: #fff6d5; padding: .4em .8em; }
table { border-collapse: collapse; margin: .5em 0; } td, th { border: 1px solid #bbb; padding: .2em .6em; }
th { background: #eee; } img { max-width: 100%; height: auto; display: block; margin: .5em 0; }
nav ul { margin: .2em 0; } .photo-header { display: flex; gap: 1.5em; align-items: flex-start; }
"""

# Marks each image once the page has loaded: data-loaded="true" when it decoded to a real
# picture; a headless browser's DOM dump then shows broken or missing figures.
_CHECK_SCRIPT = """
window.addEventListener("load", function () {
  document.querySelectorAll("img").forEach(function (img) {
    img.setAttribute("data-loaded", String(img.complete && img.naturalWidth > 0));
  });
  document.body.setAttribute("data-checked", "true");
});
"""


def page(network: Network, settings: Settings, photos: Sequence[dict]) -> str:
    """The page's HTML: a header, then per photo its notes, contents and sections.

    ``photos``: per photo a dict with ``id``, ``path``, ``notes``, ``thumbnail`` (an
    ``<img>`` tag) and ``sections`` (section name -> HTML), in page order.
    """
    model = network.model
    parts = [f"<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>jaxvis report: {model.name}"
             f"</title>\n<style>{_STYLE}</style>\n<script>{_CHECK_SCRIPT}</script></head><body>",
             f"<h1>What {html.escape(model.name)} sees in {len(photos)} photo{'s' * (len(photos) != 1)}</h1>"]
    if network.random:
        parts.append('<p class="warning">RANDOM WEIGHTS: this network was not trained. Its predictions, class '
                     'names and maps show how the methods work, not what a trained network sees.</p>')
    parts.append(f"<p>Network: {html.escape(model.name)}, input {model.input_shape[0]}x{model.input_shape[1]}, "
                 f"{model.num_classes} classes; weights: {html.escape(network.source)}.</p>")
    if settings.note:
        parts.append(f'<p class="note">{html.escape(settings.note)}</p>')
    off = [TITLES[s] for s in SECTIONS if s not in settings.sections]
    if off:
        parts.append(f"<p>Sections not computed: {html.escape(', '.join(off))}.</p>")
    for section, why in unavailable(model, settings).items():
        if section in settings.sections:
            parts.append(f'<p class="note">{TITLES[section]} is left out: {html.escape(why.rstrip("."))}.</p>')
    parts.append("<nav><b>Photos:</b> " + " · ".join(
        f'<a href="#{p["id"]}">{html.escape(Path(str(p["path"])).name)}</a>' for p in photos) + "</nav>")
    for p in photos:
        parts.append(f'<section class="photo" id="{p["id"]}"><h2>{html.escape(Path(str(p["path"])).name)}</h2>')
        contents = "".join(f'<li><a href="#{p["id"]}-{s}">{TITLES[s]}</a></li>' for s in p["sections"])
        notes = "".join(f'<p class="note">{html.escape(n)}</p>' for n in p["notes"])
        parts.append(f'<div class="photo-header">{p["thumbnail"]}<div>{notes}<nav class="toc"><b>Contents</b>'
                     f"<ul>{contents}</ul></nav></div></div>")
        for s, text in p["sections"].items():
            parts.append(f'<div class="section" id="{p["id"]}-{s}" data-section="{s}"><h3>{TITLES[s]}</h3>{text}'
                         "</div>")
        parts.append("</section>")
    parts.append("</body></html>\n")
    return "\n".join(parts)


def write(network: Network, pixels_NHWC, paths: Sequence[str], out, settings: Settings = Settings(),
          notes: Sequence[Sequence[str]] | None = None, progress: bool = True) -> Path:
    """Write the report on photos to ``out/index.html`` (figures beside it); returns its path.

    Args:
      network: the network and its class names.
      pixels_NHWC: the photos as pixels in [0, 1] at the model's input size.
      paths: where each photo came from (its name on the page).
      out: the report's folder (created).
      settings: what to compute.
      notes: per photo, lines for the page (e.g. "converted from grayscale").
      progress: show a progress bar (tqdm) over photos and sections.
    """
    model = network.model
    check(network, settings)
    pixels_NHWC = np.asarray(pixels_NHWC, np.float32)
    _checks.images(pixels_NHWC, model.input_shape, what="photos")
    _checks.finite(pixels_NHWC, "photos")
    if len(paths) != len(pixels_NHWC):
        raise ValueError(f"one path per photo: got {len(paths)} paths for {len(pixels_NHWC)} photos")
    notes = [list(n) for n in notes] if notes is not None else [[] for _ in paths]
    sections = [s for s in settings.sections if s not in unavailable(model, settings)]
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    x_NHWC = np.asarray(model.normalize(pixels_NHWC))
    done: list[dict] = []
    bar = tqdm(total=len(paths) * len(sections), unit="section", disable=not progress)
    with bar:
        for photo_id, path, x_HWC, photo_notes in zip(photo_ids(paths), paths, x_NHWC, notes):
            digest = hashlib.sha256(x_HWC.tobytes()).hexdigest()[:16]
            thumb = f"{photo_id}/photo.png"
            _io.write_atomically(folder / thumb, lambda f, x=x_HWC: f.write(_png_bytes(
                report_plots.photo(plots.pixels(model, x), Path(str(path)).name))))
            entry = {"id": photo_id, "path": str(path), "notes": photo_notes, "sections": {},
                     "thumbnail": _img(folder, thumb, f"the photo {Path(str(path)).name} as the network sees it")}
            done.append(entry)
            probs_K = np.asarray(probabilities(model, network.params, x_HWC[None])[0])
            for section in sections:
                bar.set_description(f"{photo_id}: {section}")
                entry["sections"][section] = _run_section(network, settings, section, folder, photo_id, x_HWC,
                                                          probs_K, digest)["html"]
                _io.write_text_atomically(folder / "index.html", page(network, settings, done))
                bar.update()
    return folder / "index.html"
