"""Occlusion sensitivity at scale (Zeiler & Fergus Sec. 4.2, Fig. 7; Krypton, SIGMOD 2019).

A grey square slides over the image and the network runs once per position. Per
position :func:`sweep` reads the probability of the true class (Fig. 7d), the most
probable class (Fig. 7e) and, given a ``layer``, the total activation of that layer's
map strongest on the unoccluded image (Fig. 7b); per pixel it gives Captum's
``Occlusion`` attribution. Positions run in vmapped batches inside one compiled loop
per group of images, chunked so that peak memory stays under ``memory_budget``; their
results stay on the device until the group is done (drill-down ranks its cells there
too), and the host reads them once. Any JAX network wrapped by :func:`jaxvis.wrap`
sweeps by full re-inference.

Conventions:

- *Positions* are Captum's: along an axis of length ``H`` the occluder's top-left row
  is ``0, s, 2s, ...`` up to the first that reaches the end, ``ceil((H - p) / s) + 1``
  rows in all. The occluder covers rows ``[r, min(r + p, H))``: where the stride does
  not divide ``H - p``, the last occluder hangs over the border and is cut there, so
  every pixel is covered when ``s <= p`` (pixels no occluder covers, possible only when
  ``s > p``, get attribution 0).
- *Fill* is in the network's input space. The default 0 is the dataset mean:
  :meth:`~jaxvis.models.Model.normalize` subtracts the training mean, so 0 is the
  paper's grey square (the mean colour), not black. A scalar, a ``(C,)`` colour or a
  ``(H, W, C)`` image (a blurred copy, say) may be given instead.
- *Attribution* follows ``captum.attr.Occlusion`` exactly: for each pixel, the mean
  over the occluder positions covering it of ``score(image) - score(occluded)``, where
  the score is the true-class probability (Captum with ``forward_func =
  softmax(model(x))``, the default) or logit (``score="logit"``: Captum on the raw
  model), with ``baselines = fill``, ``sliding_window_shapes = (C, p, p)``,
  ``strides = (C, s, s)`` and ``target = label``. Captum gives each channel the
  same value; here it is returned once per pixel.

Methods:

- ``"full"``: re-inference of every occluded image.
- ``"incremental"``: Krypton (Nakandala, Kumar & Papakonstantinou, SIGMOD 2019). The
  unoccluded image runs once and every layer's input is kept, padded into a *canvas*.
  For each position only the region the occluder can change is recomputed, layer by
  layer: :func:`propagate` grows it by each layer's kernel, stride, padding and
  dilation, the input window it needs is read from the canvas with the changed region
  pasted in, and windows have a fixed size per layer (clamped at the borders) so that
  positions vmap. In a residual network an addition recomputes the union of its
  inputs' windows, each pasted into that input's unoccluded map. Layers after the last
  spatial map (dense) run on the full map. Exact:
  equal to ``"full"`` to float rounding, in float32 (``precision="highest"``, the
  default; a GPU's TF32 products would leave differences near 1e-3). On CPU, the windows
  of 3x3 convolutions with 512 input channels run by Winograd's F(2x2, 3x3)
  (:func:`jaxvis.layers.winograd_conv`),
  1.9x the direct convolution's rate there, with somewhat larger rounding (vgg16's
  probabilities within 5e-6 of a float64 pass).

Approximations (Krypton's approximate inference): ``tau`` caps every conv/pool layer's recomputed window
at ``round(tau * W_out)`` (centre crop; the rest keeps the unoccluded values), and
``coarse_stride`` runs the coarse grid everywhere, then the fine ``stride`` only in the
``drill_fraction`` of coarse cells where the true-class probability drops most; other
fine positions take their coarse cell's values. Judge either with :func:`ssim` against
the exact maps.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import math
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from jaxvis import _checks, kinds as K, layers as L
from jaxvis.models import Layer, Model, Params
from jaxvis.project import strongest_map

METHODS = ("full", "incremental")
PRECISIONS = ("highest", "default")
SCORES = ("probability", "logit")
_BYTES = 4  # float32


@dataclasses.dataclass(frozen=True)
class OcclusionMaps:
    """What a sweep measured, for ``N`` images and a ``P x Q`` grid of occluder positions.

    Attributes:
      rows_P, cols_Q: the occluder's top-left row and column at each grid position; it
        covers ``[row, min(row + patch[0], H))`` and likewise for columns.
      patch: the occluder's ``(height, width)``.
      prob_NPQ: probability of the true class with the occluder there (Fig. 7d).
      label_NPQ: most probable class with the occluder there (Fig. 7e).
      feature_NPQ: total activation of ``layer``'s strongest map (Fig. 7b), or None.
      channel_N: that map's index per image, or None.
      base_prob_N, base_label_N: true-class probability and predicted class unoccluded.
      score_NPQ, base_score_N: the true-class ``score`` (probability or logit) with the
        occluder there and unoccluded; their drop is what the attribution averages.
      attribution_NHW: Captum's ``Occlusion`` attribution of ``score`` (module docstring).
      computed_NPQ: True where the position was run; False where drill-down copied the
        coarse cell's values.
      score: "probability" or "logit", what the attribution measures.
    """

    rows_P: np.ndarray
    cols_Q: np.ndarray
    patch: tuple[int, int]
    prob_NPQ: np.ndarray
    label_NPQ: np.ndarray
    feature_NPQ: np.ndarray | None
    channel_N: np.ndarray | None
    base_prob_N: np.ndarray
    base_label_N: np.ndarray
    score_NPQ: np.ndarray
    base_score_N: np.ndarray
    attribution_NHW: np.ndarray
    computed_NPQ: np.ndarray
    score: str


# ---------------------------------------------------------------------------------------
# Geometry


def positions(size: int, patch: int, stride: int) -> np.ndarray:
    """Captum's occluder starts along an axis: ``0, s, 2s, ...``, ``ceil((size - patch) / s) + 1`` of them."""
    for what, value in (("size", size), ("patch", patch), ("stride", stride)):
        _checks.count(what, value)
    if patch > size:
        raise ValueError(f"patch {patch} is larger than the axis ({size})")
    return np.arange(-(-(size - patch) // stride) + 1) * stride


def _tau(tau, optional: bool = False) -> None:
    """Raise unless ``tau`` is a number in (0, 1] (or None, if ``optional``)."""
    if optional and tau is None:
        return
    if isinstance(tau, bool) or not isinstance(tau, (int, float, np.number)) or not 0 < tau <= 1:
        raise ValueError(f"tau must be {'None or ' if optional else ''}a number in (0, 1], got {tau!r}")


def propagate(layer: Layer, out_hw: tuple[int, int], start, size: tuple[int, int], tau: float | None = None):
    """Where a changed region of a layer's input lands in its output (Krypton's patch
    propagation), as the layer's kind says (:meth:`jaxvis.kinds.Layer.reach`).

    For a sliding window (conv, max pool), per axis, with effective kernel ``K``
    (dilation included), stride ``S`` and leading padding ``P``, an input region starting
    at ``x`` of width ``w`` changes the outputs from ``ceil((P + x - K + 1) / S)``, at
    most ``min(ceil((w + K - 1) / S), W_out)`` of them whatever the alignment: that bound
    is the window's fixed width. The start is clamped so the window stays inside the map
    (it then still covers every changed output). ``tau`` caps the width at
    ``round(tau * W_out)`` (halves up), keeping the centre. Layers that act on each
    position alone (relu, lrn, dropout, batch norm) keep the region.

    Args:
      layer: the layer.
      out_hw: its output's height and width.
      start: the region's top-left ``(row, col)``, Python or traced integers.
      size: the region's ``(height, width)``, Python integers.
      tau: the projective-field threshold, or None for the exact window.

    Returns:
      ``(start, size)`` of the output window; ``size`` is static.
    """
    for value in size:
        _checks.count("size", value)
    _tau(tau, optional=True)
    return layer.reach(out_hw, start, size, tau)


@dataclasses.dataclass(frozen=True)
class _Step:
    """One spatial layer of an incremental pass: its output window and how it reads it.

    A conv or pool layer's output window needs ``read`` input rows and columns. They
    come from the layer's *canvas*: its unoccluded input padded by the layer's padding
    and by ``slack``, the most the incoming window can reach out of the read window
    (before, after) over every possible position, so that pasting the incoming window
    into the read window never needs clamping. A layer with several inputs (an addition)
    computes the union of their windows, each pasted into its input's unoccluded map.
    """

    layer: Layer
    out_hw: tuple[int, int]
    prev: tuple[int, int]
    size: tuple[int, int]
    slack: tuple[tuple[int, int], tuple[int, int]]
    tau: float | None
    winograd: bool = False
    inputs: tuple[str, ...] = ()

    @property
    def windowed(self) -> bool:
        return self.layer.windowed

    @property
    def read(self) -> tuple[int, int]:
        """Input rows and columns the output window needs: ``(size - 1) * S + K``."""
        return tuple((self.size[a] - 1) * self.layer.stride[a] + self.layer.effective_kernel[a] for a in range(2))

    @property
    def extra(self) -> int:
        """Columns read beyond the window (a direct conv layer's: see :meth:`jaxvis.kinds.Conv.window`)."""
        return 0 if self.winograd else self.layer.window_extra

    def canvas_padding(self, in_hw: tuple[int, int]) -> tuple[tuple[int, int], tuple[int, int]]:
        pads = []
        for a in range(2):
            lo = self.layer.padding[a][0]
            reach = (self.out_hw[a] - 1) * self.layer.stride[a] + self.layer.effective_kernel[a] - lo - in_hw[a]
            pads.append((lo + self.slack[a][0], max(reach, 0) + self.slack[a][1] + (self.extra if a else 0)))
        return tuple(pads)


def _spatial_layers(model: Model) -> tuple[Layer, ...]:
    """The layers before the first without a receptive field (an adaptive pool, a
    flatten): the sliding-window part. The rest run on the full map."""
    count = next(i for i, layer in enumerate(model.layers) if layer.name not in model.fields)
    return model.layers[:count]


# On XLA:CPU, windows of 3x3 stride-1 convolutions with at least this many input
# channels run by Winograd's F(2x2, 3x3) (layers.winograd_conv). Measured on 2 cores
# (scripts/bench_conv.py): 1.9x the direct convolution's rate at 512 channels, 1.5x at
# 256, 0.4-0.6x at 64 and 128, where the transforms cost more than they save. The exact
# vgg16 sweep at 224 runs 1.5x faster (35 -> 54 positions/s) with 512 or 256 alike;
# with 512, fewer layers add Winograd's larger rounding: vgg16's probabilities are
# within 5e-6 of a float64 pass, against 9e-6 with 256 (direct convolutions: 1.3e-6).
_WINOGRAD_CHANNELS = 512


def _winograd(layer: Layer, channels: int) -> bool:
    return (jax.default_backend() == "cpu" and layer.convolution and layer.fits_winograd()
            and channels >= _WINOGRAD_CHANNELS)


@functools.lru_cache(maxsize=64)
def _plan(model: Model, patch: tuple[int, int], tau: float | None) -> tuple[_Step, ...]:
    """The windows of an incremental pass. Every possible start of the occluder is
    followed through the layers, each from its inputs' windows, to find how far the
    incoming window can reach out of the read window (the slack: none for exact
    windows, some where ``tau`` cuts them) and how wide the union of several inputs'
    windows gets (its fixed size)."""
    steps = []
    regions = {K.INPUT: (tuple(np.arange(model.input_shape[a] - patch[a] + 1) for a in range(2)), tuple(patch))}
    for layer in _spatial_layers(model):
        out_hw, inputs = model.shapes[layer.name][:2], model.sources[layer.name]
        starts, size = regions[inputs[0]]
        slack = ((0, 0), (0, 0))
        if len(inputs) > 1:  # the union of the windows, clamped inside the map as a whole
            first = [np.minimum.reduce([regions[n][0][a] for n in inputs]) for a in range(2)]
            last = [np.maximum.reduce([regions[n][0][a] + regions[n][1][a] for n in inputs]) for a in range(2)]
            new = tuple(min(int((last[a] - first[a]).max()), out_hw[a]) for a in range(2))
            moved = tuple(np.clip(first[a], 0, out_hw[a] - new[a]) for a in range(2))
        else:
            moved, new = propagate(layer, out_hw, starts, size, tau)
            moved = tuple(np.asarray(m) for m in moved)
        if layer.windowed:
            first = [moved[a] * layer.stride[a] - layer.padding[a][0] for a in range(2)]
            last = [first[a] + (new[a] - 1) * layer.stride[a] + layer.effective_kernel[a] for a in range(2)]
            slack = tuple((max(int((first[a] - starts[a]).max()), 0),
                           max(int((starts[a] + size[a] - last[a]).max()), 0)) for a in range(2))
        steps.append(_Step(layer, out_hw, size, new, slack, tau,
                           _winograd(layer, model.input_shapes[layer.name][-1]), inputs))
        regions[layer.name] = (moved, new)
    return tuple(steps)


def _inputs(model: Model, x, activations: dict) -> list:
    """The (first) input of each layer, given the network input and every layer's output."""
    outputs = {K.INPUT: x, **activations}
    return [outputs[inputs[0]] for inputs in model.sources.values()]


# ---------------------------------------------------------------------------------------
# One chunk of positions, for a group of images


def _readout(logits_BK, label, score: str):
    """True-class probability, most probable class and the attributed score."""
    probs = jax.nn.softmax(logits_BK, axis=-1)
    prob = probs[..., label]
    value = prob if score == "probability" else logits_BK[..., label]
    return prob, jnp.argmax(logits_BK, axis=-1).astype(jnp.int32), value


def _occlude(image_HWC, fill_HWC, start, patch):
    rows = jnp.arange(image_HWC.shape[0])
    cols = jnp.arange(image_HWC.shape[1])
    inside = (((rows >= start[0]) & (rows < start[0] + patch[0]))[:, None]
              & ((cols >= start[1]) & (cols < start[1] + patch[1]))[None, :])
    return jnp.where(inside[..., None], fill_HWC, image_HWC)


@functools.partial(jax.jit, static_argnames=("model", "steps", "layer", "score"))
def _prepare(model: Model, steps: tuple[_Step, ...] | None, layer: str | None, score: str, params: Params,
             images_GHWC, labels_G):
    """The unoccluded pass: its readout, the strongest map of ``layer``, and what an
    incremental pass keeps of it (None for full re-inference): each windowed layer's
    canvas, the last spatial map, and the strongest map of ``layer``.

    One call, so that XLA frees each activation once the canvases and maps it feeds are
    made: the call holds what it keeps and a layer's input and output at a time, never
    every activation at once."""
    logits, trace = model.apply(params, images_GHWC)
    readout = jax.vmap(functools.partial(_readout, score=score))(logits, labels_G)
    activations = trace.activations
    channel = (jnp.zeros(len(labels_G), jnp.int32) if layer is None
               else jax.vmap(strongest_map)(activations[layer]))
    if steps is None:
        return readout, channel, None
    inputs = dict(zip(model.names, _inputs(model, images_GHWC, activations)))
    canvases = {}
    for step in steps:
        if step.windowed:
            below = inputs[step.layer.name]
            pads = step.canvas_padding(below.shape[1:3])
            canvases[step.layer.name] = lax.pad(below, jnp.array(step.layer.pad_value, below.dtype),
                                                ((0, 0, 0), (*pads[0], 0), (*pads[1], 0), (0, 0, 0)))
    merged = {name for step in steps if len(step.inputs) > 1 for name in step.inputs}
    kept = {"canvas": canvases, "last": activations[steps[-1].layer.name],
            "whole": {name: activations[name] for name in merged}}
    if layer is not None:
        kept["map"] = jnp.take_along_axis(activations[layer], channel[:, None, None, None], axis=-1)[..., 0]
    return readout, channel, kept


def _full_position(model: Model, layer: str | None, patch: tuple[int, int], params: Params, kept, image_HWC,
                   fill_HWC, channel, start):
    """A full pass over the occluded image up to the last spatial map (a jaxvis model's
    dense layers run later, on many positions at once: :func:`_tail`) or to the logits (a
    wrapped function), and the feature total."""
    until = _spatial_layers(model)[-1].name if isinstance(model, Model) else None
    maps, trace = model.apply(params, _occlude(image_HWC, fill_HWC, start, patch)[None], until=until)
    feature = None if layer is None else jnp.take(trace.activations[layer][0], channel, axis=-1).sum()
    return maps[0], feature


def _window_layer(step: _Step, params: Params, canvas_HWC, window_hwC, at, new_at):
    """Recompute a conv or pool layer's output window from its canvas and the incoming window."""
    layer, read, slack, extra = step.layer, step.read, step.slack, step.extra
    corner = [new_at[a] * layer.stride[a] for a in range(2)]
    buffer = lax.dynamic_slice(canvas_HWC, (corner[0], corner[1], 0),
                               (read[0] + sum(slack[0]), read[1] + sum(slack[1]) + extra, canvas_HWC.shape[2]))
    offset = [at[a] + layer.padding[a][0] + slack[a][0] - corner[a] for a in range(2)]
    buffer = lax.dynamic_update_slice(buffer, window_hwC, (offset[0], offset[1], 0))
    region = buffer[None, slack[0][0]:slack[0][0] + read[0], slack[1][0]:slack[1][0] + read[1] + extra]
    if step.winograd:
        y = L.winograd_conv(region, params[layer.name]["winograd"])[0]
        bias = params[layer.name].get("bias")
        return y if bias is None else y + bias.reshape(1, 1, -1)
    return layer.window(params.get(layer.name), region, extra)


def _tail(model: Model, params: Params, x):
    """The layers after the last spatial one (adaptive pool, flatten, dense, relu, dropout),
    on full maps; none for a wrapped function, whose positions end in logits."""
    if not isinstance(model, Model):
        return x
    last = _spatial_layers(model)[-1].name
    return model.run(params, {last: x}, K.Run(L.relu), after=last)[0]


def _incremental_position(steps: tuple[_Step, ...], layer: str | None, params: Params, kept, image_HWC, fill_HWC,
                          channel, start):
    """The last spatial map (and the feature total) with the occluder at ``start``,
    recomputing only the windows it can change."""
    patch = steps[0].prev
    h, w, c = image_HWC.shape
    at = (jnp.minimum(start[0], h - patch[0]), jnp.minimum(start[1], w - patch[1]))
    window = _occlude(lax.dynamic_slice(image_HWC, (at[0], at[1], 0), (*patch, c)),
                      lax.dynamic_slice(fill_HWC, (at[0], at[1], 0), (*patch, c)),
                      (start[0] - at[0], start[1] - at[1]), patch)
    feature, windows = None, {K.INPUT: (at, window)}  # each layer's changed window and where it starts
    for step in steps:
        if len(step.inputs) > 1:
            at = tuple(jnp.clip(functools.reduce(jnp.minimum, [windows[n][0][a] for n in step.inputs]), 0,
                                step.out_hw[a] - step.size[a]) for a in range(2))
            parts = tuple(lax.dynamic_update_slice(
                lax.dynamic_slice(kept["whole"][n], (*at, 0), (*step.size, kept["whole"][n].shape[-1])),
                windows[n][1], (windows[n][0][0] - at[0], windows[n][0][1] - at[1], 0))[None] for n in step.inputs)
            window = step.layer.forward(params.get(step.layer.name), parts, K.Run(L.relu))[0]
        elif step.windowed:
            at, window = windows[step.inputs[0]]
            new_at, _ = propagate(step.layer, step.out_hw, at, step.prev, step.tau)
            window = _window_layer(step, params, kept["canvas"][step.layer.name], window, at, new_at)
            at = new_at
        else:  # a pointwise layer: relu, lrn, dropout, batch norm
            at, window = windows[step.inputs[0]]
            window = step.layer.forward(params.get(step.layer.name), (window[None],), K.Run(L.relu))[0]
        windows[step.layer.name] = (at, window)
        if step.layer.name == layer:
            before = lax.dynamic_slice(kept["map"], at, step.size)
            feature = kept["map"].sum() - before.sum() + jnp.take(window, channel, axis=-1).sum()
    return lax.dynamic_update_slice(kept["last"], window, (at[0], at[1], 0)), feature


# A progress report leaves a compiled loop of blocks as a host callback with a token and
# the block's index: the token is an argument of the compiled call (so that it compiles
# once whatever the reporter) and names the reporter registered here for its sweep.
_REPORTERS: dict[int, Callable[[int], None]] = {}
_TOKENS = itertools.count(1)


def _report(token, index, _) -> None:
    _REPORTERS[int(token)](int(index))


@functools.partial(jax.jit, static_argnames=("model", "steps", "layer", "score", "patch", "batch", "stack", "block",
                                             "mesh", "report"))
def _positions(model: Model, steps: tuple[_Step, ...] | None, layer: str | None, score: str,
               patch: tuple[int, int], batch: int, stack: int, block: int, mesh: Mesh | None, report: bool,
               params: Params, kept, images_GHWC, fill_HWC, labels_G, channel_G, starts_GT2, token):
    """Readouts ``(G, T)`` of all ``T`` positions of a group of images, in one program.

    A loop inside the program takes ``block`` positions of every image at a time, so that
    results stay on the device until the round is done. In a block, the spatial layers
    run ``batch`` positions of each of ``stack`` images at a time (vmapped), keeping the
    working set small; the dense layers then run on the block's positions of an image at
    once, so that their weights are read once per image and block rather than once per
    batch. With a mesh, each device takes its share of every block. With ``report``, each
    finished block calls the host back with ``token`` and its index (:func:`_report`):
    nothing else leaves the device.
    """
    if steps is None:
        spatial = functools.partial(_full_position, model, layer, patch, params)
    else:
        # kernels in Winograd's domain, transformed once per call
        transformed = {**params, **{s.layer.name: {**params[s.layer.name],
                                                   "winograd": L.winograd_kernel(params[s.layer.name]["kernel"])}
                                    for s in steps if s.winograd}}
        spatial = functools.partial(_incremental_position, steps, layer, transformed)

    def positions(kept, images_GHWC, labels_G, channel_G, starts_GB2):
        def image(args):
            kept_one, image_HWC, label, channel, starts_B2 = args
            maps, feature = lax.map(lambda start: spatial(kept_one, image_HWC, fill_HWC, channel, start),
                                    starts_B2, batch_size=batch)
            return (*_readout(_tail(model, params, maps), label, score), feature)

        return lax.map(image, (kept, images_GHWC, labels_G, channel_G, starts_GB2), batch_size=stack)

    if mesh is not None:
        replicated, split_positions = PartitionSpec(), PartitionSpec(None, mesh.axis_names[0])
        positions = jax.shard_map(positions, mesh=mesh, in_specs=(replicated,) * 4 + (split_positions,),
                                  out_specs=split_positions)

    def one_block(args):
        index, starts_GB2 = args
        out = positions(kept, images_GHWC, labels_G, channel_G, starts_GB2)
        if report:  # after the block: the callback reads one of its results
            jax.debug.callback(_report, token, index, out[0][0, 0])
        return out

    g, t = starts_GT2.shape[:2]
    count = -(-t // block)
    # the last block padded with the last position, as a call of its own would be
    padded_GT2 = jnp.concatenate([starts_GT2, jnp.broadcast_to(starts_GT2[:, -1:], (g, count * block - t, 2))], axis=1)
    out = lax.map(one_block, (jnp.arange(count), padded_GT2.reshape(g, count, block, 2).transpose(1, 0, 2, 3)))
    out = tuple(None if v is None else v.transpose(1, 0, 2).reshape(g, count * block)[:, :t] for v in out)
    if mesh is None:
        return out
    return lax.with_sharding_constraint(out, NamedSharding(mesh, PartitionSpec()))


@functools.partial(jax.jit, static_argnames=("count",))
def _drill_starts(count: int, prob_GC, base_prob_G, fine_CO2, inside_CO):
    """Drill-down's fine starts ``(G, count, 2)``, chosen on the device: each image's coarse
    cells in order of drop of the true-class probability (largest first; ties in grid
    order), their fine positions (``fine_CO2``, real where ``inside_CO``) in turn, the
    first ``count`` real ones."""
    g = prob_GC.shape[0]
    order_GC = jnp.argsort(prob_GC - base_prob_G[:, None], axis=1, stable=True)
    first = jnp.argsort(~inside_CO[order_GC].reshape(g, -1), axis=1, stable=True)[:, :count]
    return jnp.take_along_axis(fine_CO2[order_GC].reshape(g, -1, 2), first[..., None], axis=1)


# ---------------------------------------------------------------------------------------
# Memory and chunking

# What a sweep holds at once must stay within its memory budget: the host's copy of the
# images and its results, and on the devices the images, the fill, what the unoccluded
# pass keeps, and one call's temporaries, outputs and arguments. XLA reports a compiled
# call's temporaries and outputs (memory_analysis); XLA:CPU's convolutions pack their
# operands outside them (bounded by _packing). The rest (Python's and numpy's objects,
# the runtime's own allocations, allocator slack) is covered by planning for the budget
# divided by _SAFETY, less _OVERHEAD. Measured with scripts/bench_memory.py, the peak
# resident set of a compiled sweep grew by 0.92 of the planned bytes for vgg16's
# incremental sweep at 224 (the packing bound is far above what padded convolutions use
# on 2 cores, so full re-inference grew by 0.2 of its plan) and by the plan plus 1.2 MB
# for mnist_cnn at a 12 MB budget.
_SAFETY = 1.15
_OVERHEAD = 2 ** 21
# The vmapped batch of positions takes at most this share of what the budget leaves a
# call (the rest holds the call's positions through the dense layers), and at most
# _CACHE_SET bytes of XLA's buffers as _memory estimates them: larger batches run no
# faster on CPU. Measured on 2 cores: VGG16 at 224 ran best near 20 incremental positions
# and 2 full ones (slower at 64 and 8), MNIST with all 625 positions of an image at once;
# this size gives VGG16 11 (of 196: 18 batches, 198 positions) and 2, and MNIST 625.
_BATCH_SHARE = 0.5
_CACHE_SET = 64e6
# At most this many positions per block (of all images of a group): enough to amortize the
# dense layers' weights, few enough to report progress every few seconds.
_CALL_POSITIONS = 20_000
# Compiles tried before a budget that the estimates said fits but the compiled calls
# do not is refused.
_ATTEMPTS = 4


def _floats(shape) -> int:
    return math.prod(shape)


@dataclasses.dataclass(frozen=True)
class _Memory:
    """Bytes per device of what a sweep holds. ``image`` and ``kept`` are exact; the
    estimates of XLA's temporaries and outputs (``prepare``, ``fixed``, ``per_batch``,
    ``per_call``) are checked by :func:`_fit` against the compiled calls; XLA does not
    see XLA:CPU's convolution packing (the ``*packing`` fields, :func:`_packing`).

    Attributes:
      image: one input image (the fill is one more).
      kept: what an incremental pass keeps of one image's unoccluded pass (0 for full).
      prepare, prepare_packing: one image's unoccluded pass: what it keeps and a layer's
        input and output; its convolutions' packing.
      fixed, fixed_packing: a call of positions whatever its size: Winograd's transformed
        kernels; the convolutions' packed kernels.
      per_batch, packing: each position of a vmapped batch in the spatial layers; in a
        convolution's packing.
      per_call: each position of a call: its last spatial map through the dense layers.
      per_result: each position of a round, per image: its start and readouts, which stay
        on every device until the round is done (a few dozen bytes, where a position's
        pass holds at least a map).
    """

    image: int
    kept: int
    prepare: int
    prepare_packing: int
    fixed: int
    fixed_packing: int
    per_batch: int
    packing: int
    per_call: int
    per_result: int

    def xla_call(self, batch: int, stack: int, block: int) -> int:
        """XLA's buffers in a call of ``block`` positions per image, ``stack`` images of
        ``batch`` positions vmapped at a time."""
        return self.fixed + stack * (batch * self.per_batch + block * self.per_call)

    def call(self, batch: int, stack: int, block: int) -> int:
        """All a call holds: XLA's buffers and the packing."""
        return self.xla_call(batch, stack, block) + self.fixed_packing + stack * batch * self.packing

    def peak(self, group: int, call: int) -> int:
        """``group`` images in the unoccluded pass, then with a call of ``call`` bytes."""
        return self.image * (group + 1) + max(group * (self.prepare + self.prepare_packing), group * self.kept + call)

    def scaled(self, prepare: float, call: float) -> _Memory:
        """XLA's unoccluded pass raised by the factor ``prepare``, its calls by ``call`` (never lowered)."""
        def up(value):
            return math.ceil(value * max(call, 1.0))
        return dataclasses.replace(self, prepare=math.ceil(self.prepare * max(prepare, 1.0)), fixed=up(self.fixed),
                                   per_batch=up(self.per_batch), per_call=up(self.per_call))


def _packing(depth: int, features: int, outputs: int) -> tuple[int, int]:
    """Floats XLA:CPU's convolution (Eigen's tensor contraction) may pack beyond XLA's own
    buffers when it computes ``outputs`` output pixels of a conv layer: ``(per output
    pixel, per call)``. It packs at most two k-slices of every row block of the patch
    matrix and every column block of the kernel, ``2 (outputs + features) K`` with
    ``K = kh kw C_in / groups``, the ``depth`` of the dot products (0: not a convolution).
    Measured on 1 and 2 threads: up to 0.99 of this for unpadded convolutions, 0.1-0.3 for
    padded ones. Other backends count their convolutions' scratch among XLA's buffers, and
    dense layers pack cache-sized blocks."""
    if not depth or jax.default_backend() != "cpu":
        return 0, 0
    return 2 * outputs * depth, 2 * features * depth


def _network(model: Model) -> tuple[list[int], list[tuple[int, int]], int]:
    """Floats of the input and of each layer's output in order, each layer's convolution
    packing (:func:`_packing`) for a whole image, and how many layers a position's pass
    runs before the dense tail: the spatial layers of a jaxvis model; all layers of a
    wrapped function, whose positions end in logits. A wrapped function's convolutions
    are taken to read as many channels as the widest map before them (their inputs are
    not recorded)."""
    if isinstance(model, Model):
        sizes = [_floats(model.input_shape)] + [_floats(model.shapes[layer.name]) for layer in model.layers]
        packs = [_packing(layer.conv_depth(model.input_shapes[layer.name][-1]), model.shapes[layer.name][-1],
                          _floats(model.shapes[layer.name][:2])) for layer in model.layers]
        return sizes, packs, len(_spatial_layers(model))
    sizes, packs, channels = [_floats(model.input_shape)], [], model.input_shape[-1]
    for name in model.names:
        shape, geometry = model.shapes[name], model.geometry.get(name, {})
        depth = (_floats(geometry["kernel"]) * channels // geometry.get("groups", 1)
                 if model.kinds[name] == "conv" and "kernel" in geometry else 0)
        packs.append(_packing(depth, shape[-1], _floats(shape[:-1])))
        sizes.append(_floats(shape))
        if len(shape) == 3:
            channels = max(channels, shape[-1])
    return sizes, packs, len(model.names)


def _memory(model: Model, steps: tuple[_Step, ...] | None, layer: str | None) -> _Memory:
    """What one image, its unoccluded pass and the calls of positions hold (:class:`_Memory`).

    XLA frees a buffer after its last use, so a chain of layers holds about one layer's
    input and output at a time: the widest such pair estimates a forward pass's
    temporaries, to which a convolution's packing adds (:func:`_packing`: one conv layer
    runs at a time). An incremental position holds the window buffer a layer reads (its
    slack included, and its copy), the window it computes and Winograd's transformed
    tiles; every position of a batch also holds its copy of the last spatial map.

    A round's starts (two int32) and readouts (three or four 4-byte values) are counted
    three times per position: as given or computed, padded and stacked by blocks, and
    reordered and cut back to the positions.
    """
    sizes, packs, split = _network(model)
    # a layer's input and output; and the readouts, 64-byte aligned buffers of 4 bytes each
    widest = max(a + b for a, b in zip(sizes, sizes[1:])) + 4 * 64 // _BYTES
    per_call = sizes[split] + max((a + b for a, b in zip(sizes[split:], sizes[split + 1:])), default=0)
    per_result = 3 * _BYTES * (2 + 3 + (layer is not None))
    image_pack = max(a + b for a, b in packs)  # a whole image's convolutions
    if steps is None:
        spatial = max(a + b for a, b in zip(sizes[:split], sizes[1:split + 1]))
        per_pack, call_pack = max(a for a, _ in packs), max(b for _, b in packs)
        return _Memory(_BYTES * sizes[0], 0, _BYTES * widest, _BYTES * image_pack, 0, _BYTES * call_pack,
                       _BYTES * (sizes[0] + spatial), _BYTES * per_pack, _BYTES * per_call, per_result)
    kept, window, fixed, transform, per_pack, call_pack = sizes[split], 0, 0, 0, 0, 0
    if layer is not None:
        kept += _floats(model.shapes[layer][:2])
    for step in steps:
        below, channels = model.input_shapes[step.layer.name], model.shapes[step.layer.name][-1]
        held = _floats(step.size) * channels
        if len(step.inputs) > 1:  # the inputs' whole maps are kept; their windows pasted in, one each
            kept += sum(_floats(model.shapes[n]) for n in step.inputs)
            held += len(step.inputs) * _floats(step.size) * channels
        if step.windowed:
            read, pads = step.read, step.canvas_padding(below[:2])
            held += 2 * (read[0] + sum(step.slack[0])) * (read[1] + sum(step.slack[1]) + step.extra) * below[2]
            kept += (below[0] + sum(pads[0])) * (below[1] + sum(pads[1])) * below[2]
        if step.winograd:  # 16 values per 2x2 output tile, in and out; the kernels, transformed once a call
            held += 16 * -(-step.size[0] // 2) * -(-step.size[1] // 2) * (below[2] + channels)
            fixed += 16 * below[2] * channels
            transform = max(transform, 12 * below[2] * channels)
        else:
            pack = _packing(step.layer.conv_depth(below[2]), channels, _floats(step.size))
            per_pack, call_pack = max(per_pack, pack[0]), max(call_pack, pack[1])
        window = max(window, held)
    return _Memory(_BYTES * sizes[0], _BYTES * kept, _BYTES * (kept + widest), _BYTES * image_pack,
                   _BYTES * (fixed + transform), _BYTES * call_pack, _BYTES * (window + sizes[split]),
                   _BYTES * per_pack, _BYTES * per_call, per_result)


def _host(num_images: int, grid: int, image_shape: tuple[int, int, int]) -> int:
    """Bytes the host holds: a float32 copy of the images (or the finiteness check's
    masks), the readouts (four 4-byte values per grid position as collected, joined and
    returned, and their drops in float64: 64 bytes) and the attribution (float64 sums
    and quotient, float32 result: 20 bytes per pixel)."""
    return num_images * (_BYTES * _floats(image_shape) + 64 * grid + 20 * image_shape[0] * image_shape[1])


def _too_small(budget: float, least: float, devices: int) -> ValueError:
    """The refusal of a budget below ``least`` bytes (named rounded up to 4 digits)."""
    step = 10.0 ** (math.floor(math.log10(least)) - 3)
    return ValueError(
        f"memory_budget={budget:.3g} bytes is too small for one occluder position: use at least "
        f"{math.ceil(least / step) * step:.4g} (one image, its unoccluded pass and one position"
        + (f" on each of {devices} devices" if devices > 1 else "")
        + f", the results on the host, {_OVERHEAD / 2 ** 20:g} MiB for the runtime, and a safety factor of {_SAFETY})")


def _chunking(num_images: int, num_positions: int, memory: _Memory, budget: float, host: int,
              devices: int, held: int = 0) -> tuple[int, int, int, int]:
    """``(images per group, positions per block, positions per vmapped batch, images per
    vmapped batch)`` within ``budget``, by the estimates ``memory``, for a round of
    ``num_positions`` per image while earlier rounds' results hold ``held`` bytes per image.

    Each device may hold ``(budget / _SAFETY - _OVERHEAD - host) / devices`` bytes: see
    :meth:`_Memory.peak`, to which the round's results add (``per_result`` for each
    position, the last block's padding included). The batch is the largest within its
    share of what one image's block may hold and the cache-friendly size; a block then
    takes as many of an image's positions as the rest holds. When a block holds all of an
    image's positions, a group takes as many images as fit, and where a batch holds all
    of an image's positions (drill-down's few per image, small images), that many images'
    batches are vmapped together. Counts are chosen so that little padding is computed.
    """
    room = (budget / _SAFETY - _OVERHEAD - host) / devices
    least = memory.peak(1, memory.call(1, 1, 1) + held + memory.per_result * _round_up(num_positions, devices))
    if least > room:
        raise _too_small(budget, _SAFETY * (_OVERHEAD + host + devices * least), devices)
    share = -(-num_positions // devices)
    # one image's block beyond its fixed part, and the results beyond those of the padding
    spare = (room - 2 * memory.image - memory.kept - memory.call(0, 0, 0) - held
             - memory.per_result * num_positions)
    each = memory.per_batch + memory.packing
    largest = max(1, min(share, int(_BATCH_SHARE * spare // (each + memory.per_call)),
                         int(_CACHE_SET // memory.per_batch)))
    # of the batches down to 3/4 of the largest, the one that pads the positions least
    batch = min(range(max(1, 3 * largest // 4), largest + 1), key=lambda b: (_round_up(share, b), -b))
    fit = int((spare - batch * each) // (memory.per_call + devices * memory.per_result))  # padding: < a block
    per_device = _even(share, max(batch, min(fit, _CALL_POSITIONS // devices) // batch * batch), batch)
    block = per_device * devices
    if per_device < share:
        return 1, block, batch, 1
    most = max(1, min(num_images, _CALL_POSITIONS // block))
    stack = max(1, min(most, int(_CACHE_SET // (batch * memory.per_batch)))) if batch == share else 1
    results = held + memory.per_result * _round_up(num_positions, block)
    while True:
        group = min(most, int((room - memory.image) // (memory.image + memory.prepare + memory.prepare_packing)),
                    int((room - memory.image - memory.call(batch, stack, per_device))
                        // (memory.image + memory.kept + results)))
        if group >= stack:
            return group // stack * stack, block, batch, stack
        stack //= 2


def _even(total: int, most: int, multiple: int) -> int:
    """The smallest multiple of ``multiple`` that covers ``total`` in as few parts of at most ``most``."""
    return _round_up(-(-total // -(-total // most)), multiple)


def _round_up(n: int, multiple: int) -> int:
    return -(-n // multiple) * multiple


def _pad_to(a: np.ndarray, n: int, axis: int = 0) -> np.ndarray:
    """``a`` with its last entry along ``axis`` repeated up to length ``n``."""
    extra = n - a.shape[axis]
    if extra <= 0:
        return a
    return np.concatenate([a, np.take(a, [-1] * extra, axis=axis)], axis=axis)


def _footprint(compiled) -> int | None:
    """A compiled call's temporaries and outputs, per device, as XLA assigned them (None where unreported)."""
    analysis = compiled.memory_analysis()
    return None if analysis is None else analysis.temp_size_in_bytes + analysis.output_size_in_bytes


def _fit(model: Model, steps: tuple[_Step, ...] | None, layer: str | None, score: str, patch: tuple[int, int],
         mesh: Mesh | None, report: bool, params: Params, fill_HWC, num_images: int, rounds: list[int], budget: float,
         host: int):
    """The chunking of every round and its compiled calls, within ``budget``.

    :func:`_chunking` chooses by the estimates of :func:`_memory`; the calls are compiled
    for that chunking and XLA's count of their temporaries and outputs replaces the
    estimates. Where the calls hold more than the budget allows, the estimates are raised
    to what was measured and the chunking chosen again (a budget too small for one
    position is refused with the minimum). A round's results stay on the devices until
    the group's last round is done.

    Returns:
      images per group, the compiled unoccluded pass, and per round ``(positions per
      block, compiled call)``.
    """
    devices = 1 if mesh is None else mesh.size
    replicated = None if mesh is None else NamedSharding(mesh, PartitionSpec())
    memory = _memory(model, steps, layer)
    for _ in range(_ATTEMPTS):
        chunks, held = [], 0
        for count in rounds:
            group, block, batch, stack = _chunking(num_images, count, memory, budget, host, devices, held)
            held += memory.per_result * _round_up(count, block)
            chunks.append((group, block, batch, stack, count, held))
        group = min(chunk[0] for chunk in chunks)
        images = jax.ShapeDtypeStruct((group, *model.input_shape), jnp.float32, sharding=replicated)
        labels = jax.ShapeDtypeStruct((group,), jnp.int32, sharding=replicated)
        token = jax.ShapeDtypeStruct((), jnp.int32, sharding=replicated)
        prepare = _prepare.lower(model, steps, layer, score, params, images, labels).compile()
        _, channel, kept = prepare.out_info
        calls, sizes, ratio = [], [], 1.0
        for _, block, batch, stack, count, held in chunks:
            stack = min(stack, group)
            starts = jax.ShapeDtypeStruct((group, count, 2), jnp.int32, sharding=replicated)
            compiled = _positions.lower(model, steps, layer, score, patch, batch, stack, block, mesh, report, params,
                                        kept, images, fill_HWC, labels, channel, starts, token).compile()
            calls.append((block, compiled))
            results = memory.per_result * _round_up(count, block)
            estimate = memory.xla_call(batch, stack, block // devices) + group * results
            measured = _footprint(compiled)
            ratio = max(ratio, 1.0 if measured is None else (measured + starts.size * _BYTES) / estimate)
            sizes.append((batch, stack, block, held))
        measured = _footprint(prepare)
        grow = 1.0 if measured is None else measured / (group * memory.prepare)
        if grow <= 1 and ratio <= 1:
            return group, prepare, calls
        memory = memory.scaled(grow, ratio)
        peak = max(memory.peak(group, memory.call(batch, stack, block // devices) + group * held)
                   for batch, stack, block, held in sizes)
        if host + devices * peak <= budget / _SAFETY - _OVERHEAD:
            return group, prepare, calls
    least = memory.peak(1, memory.call(1, 1, 1) + memory.per_result * sum(_round_up(t, devices) for t in rounds))
    raise _too_small(budget, _SAFETY * (_OVERHEAD + host + devices * least), devices)


def _evaluate(model: Model, params: Params, images_NHWC, labels_N, fill_HWC, starts_NT2: np.ndarray,
              patch: tuple[int, int], layer: str | None, method: str, tau: float | None, score: str,
              memory_budget: float, host: int, mesh: Mesh | None, progress: Callable[[int], None] | None,
              refine: tuple[int, np.ndarray, np.ndarray] | None = None):
    """Every position of every image, within ``memory_budget`` (``host`` bytes of it on the host).

    ``refine = (count, fine_CO2, inside_CO)`` adds drill-down's second round: after a group
    of images has run ``starts_NT2`` (a start per coarse cell), :func:`_drill_starts`
    chooses each image's ``count`` more starts on the device, run against the same
    unoccluded pass. Per group of images the host dispatches the unoccluded pass and the
    rounds, and reads their results once, when all are done.

    Returns:
      readouts ``{prob, label, value, feature}`` of shape ``(N, T [+ count])``, the
      unoccluded ``{prob, label, value, channel}`` of shape ``(N,)``, and the starts run.
    """
    steps = _plan(model, patch, tau) if method == "incremental" else None
    n, t = starts_NT2.shape[:2]
    replicated = None if mesh is None else NamedSharding(mesh, PartitionSpec())
    params, fill_HWC = jax.device_put((params, fill_HWC), replicated)
    rounds = [t] if refine is None else [t, refine[0]]
    group, prepare, calls = _fit(model, steps, layer, score, patch, mesh, progress is not None, params, fill_HWC, n,
                                 rounds, memory_budget, host)
    tokens, parts = [], []

    def reporter(block: int, count: int, real: int) -> jax.Array:
        """A token for the calls of a round, whose blocks of ``block`` positions report to ``progress``."""
        tokens.append(next(_TOKENS))
        if progress is not None:
            _REPORTERS[tokens[-1]] = lambda index: progress(real * min(block, count - index * block))
        return jax.device_put(np.int32(tokens[-1]), replicated)

    try:
        for first in range(0, n, group):
            real = min(group, n - first)
            idx = _pad_to(np.arange(first, first + real), group)
            images, labels = jax.device_put((images_NHWC[idx], labels_N[idx]), replicated)
            readout, channel, kept = prepare(params, images, labels)
            starts, results = [jax.device_put(starts_NT2[idx], replicated)], []
            for (block, call), count in zip(calls, rounds):
                if results:  # drill-down's fine round: its starts from the coarse round's drops
                    starts.append(jax.device_put(_drill_starts(count, results[0][0], readout[0], *refine[1:]),
                                                 replicated))
                results.append(call(params, kept, images, fill_HWC, labels, channel, starts[-1],
                                    reporter(block, count, real)))
            group_results = jax.device_get((readout, channel, results, starts))  # the one read of the group
            parts.append(jax.tree.map(lambda v: v[:real], group_results))
            if progress is not None:
                jax.effects_barrier()  # every block reported before the next group's
    finally:
        for token in tokens:
            _REPORTERS.pop(token, None)
    readout, channel, results, starts = jax.tree.map(lambda *v: np.concatenate(v), *parts)
    base = dict(zip(("prob", "label", "value", "channel"), (*readout, channel)))
    out = {name: None if values[0] is None else np.concatenate(values, axis=1)
           for name, values in zip(("prob", "label", "value", "feature"), zip(*results))}
    return out, base, np.concatenate(starts, axis=1)


# ---------------------------------------------------------------------------------------
# The sweep


def _pair(what: str, value) -> tuple[int, int]:
    pair = (value, value) if np.ndim(value) == 0 else tuple(value)
    if len(pair) != 2 or not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in pair):
        raise ValueError(f"{what} must be an integer or a pair of integers, got {value!r}")
    for v in pair:
        _checks.positive(what, int(v))
    return int(pair[0]), int(pair[1])


def _fill(model: Model, fill) -> jax.Array:
    h, w, c = model.input_shape
    if fill is None:
        return jnp.zeros((h, w, c), jnp.float32)
    arr = np.asarray(fill, np.float32)
    if arr.shape not in ((), (c,), (h, w, c)):
        raise ValueError(f"fill must be a scalar, a colour of shape ({c},) or an image of shape {(h, w, c)} "
                         f"in the network's input space, got shape {arr.shape}")
    _checks.finite(arr, "fill")
    return jnp.broadcast_to(jnp.asarray(arr), (h, w, c))


def sweep(model: Model, params: Params, images_NHWC, labels_N, patch, stride, fill=None, layer: str | None = None,
          memory_budget: float = 2e9, method: str = "full", tau: float | None = None, coarse_stride=None,
          drill_fraction: float = 0.25, score: str = "probability", mesh: Mesh | None = None,
          progress: Callable[[int], None] | None = None, precision: str = "highest") -> OcclusionMaps:
    """Occlusion maps of a batch of images (conventions in the module docstring).

    Args:
      model, params: the network: a jaxvis model, or a wrapped function
        (:func:`jaxvis.wrap`) with method "full" (the incremental engine needs the layer
        tuple's geometry).
      images_NHWC: normalized images (:meth:`~jaxvis.models.Model.normalize`).
      labels_N: the true class of each image.
      patch: the occluder's side, or ``(height, width)``.
      stride: the step between occluder positions, or ``(rows, cols)``.
      fill: the occluder's value in input space; None is the dataset mean (0).
      layer: a layer with spatial maps for the feature-total map (Fig. 7b), or None.
      memory_budget: the most bytes the sweep may hold at once beyond the model, its
        weights and the images: the results on the host; on the devices the images, what
        the unoccluded pass keeps, one block's buffers, as XLA's compiled memory analysis
        counts them, with XLA:CPU's convolution packing, and a group of images' starts
        and results (a few dozen bytes per position); all with a safety factor.
        Compilation is not counted (XLA's compiler takes its memory once per shape,
        whatever the budget). A budget too small for one position is refused with the
        minimum; larger budgets run larger batches, blocks and groups of images.
      method: "full" re-inference or exact "incremental" inference (Krypton).
      tau: with "incremental", cap each layer's recomputed window at ``tau`` of its
        map (approximate; None or 1 is exact).
      coarse_stride: adaptive drill-down: this stride everywhere (a multiple of
        ``stride``), then ``stride`` in the ``drill_fraction`` of coarse cells where
        the true-class probability drops most (approximate).
      drill_fraction: the fraction ``r`` of coarse cells drilled into, counted in
        positions: ``ceil(r * cells)`` full cells' worth of fine positions, taken from
        the cells in order of drop (cells cut by the grid's edge hold fewer, so more
        cells fit); every position runs at most once.
      score: what the attribution measures: "probability" or "logit" of the true class.
      mesh: spread each block's positions over this mesh's first axis (its devices).
      progress: called with the number of positions finished after each block, from a
        host callback inside the compiled loop of blocks (only that count leaves the
        devices before a group's results are done; it may run on another thread).
      precision: the matrix products' precision (``jax.default_matmul_precision``):
        "highest" computes in float32 on every backend, so that incremental equals full
        re-inference to 1e-5; "default" is the backend's own (TF32 on recent NVIDIA GPUs:
        faster, with errors near 1e-3).

    Returns:
      An :class:`OcclusionMaps` of numpy arrays.
    """
    _checks.images(images_NHWC, model.input_shape)
    _checks.choice("precision", precision, PRECISIONS)
    with jax.default_matmul_precision(precision):
        return _sweep(model, params, images_NHWC, labels_N, patch, stride, fill, layer, memory_budget, method, tau,
                      coarse_stride, drill_fraction, score, mesh, progress)


def _sweep(model, params, images_NHWC, labels_N, patch, stride, fill, layer, memory_budget, method, tau,
           coarse_stride, drill_fraction, score, mesh, progress) -> OcclusionMaps:
    n, h, w, _ = np.shape(images_NHWC)
    if n == 0:
        raise ValueError(f"images must hold at least one image, got shape {np.shape(images_NHWC)}")
    labels = _checks.labels(labels_N, n, model.num_classes)
    _checks.choice("method", method, METHODS)
    if not isinstance(model, Model) and method != "full":
        raise ValueError(f"method={method!r} recomputes only the windows an occluder changes, following them through "
                         f"every layer's kernel, stride and padding; {model.name} is a wrapped function, not a jaxvis "
                         f"layer tuple, so that geometry is not known to the incremental engine. Use method='full' "
                         f"(exact re-inference; add coarse_stride for a faster approximate map)")
    _checks.choice("score", score, SCORES)
    patch, stride = _pair("patch", patch), _pair("stride", stride)
    if patch[0] > h or patch[1] > w:
        raise ValueError(f"patch {patch} is larger than the image ({h}, {w})")
    if layer is not None:
        model.check_layer(layer, spatial=True)
    if isinstance(model, Model) and len(model.shapes[model.names[-1]]) != 1:  # a wrapped function gives logits
        raise ValueError(f"{model.name} must end in class scores (a flat output), its output has shape "
                         f"{model.shapes[model.names[-1]]}")
    for name, value in (("memory_budget", memory_budget), ("tau", tau), ("drill_fraction", drill_fraction)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float, np.number))
                                  or not np.isfinite(value)):
            raise ValueError(f"{name} must be a finite number, got {value!r}")
    _checks.positive("memory_budget", memory_budget)
    if mesh is not None and not isinstance(mesh, Mesh):
        raise ValueError(f"mesh must be a jax.sharding.Mesh (or None), got {type(mesh).__name__} {mesh!r}")
    if progress is not None and not callable(progress):
        raise ValueError(f"progress must be callable (or None), got {type(progress).__name__} {progress!r}")
    if tau is not None:
        if method != "incremental":
            raise ValueError(f"tau caps the windows of method='incremental', got method={method!r}")
        _tau(tau)
        tau = None if tau == 1 else float(tau)
    fill_HWC = _fill(model, fill)
    images_NHWC = np.asarray(images_NHWC, np.float32)
    rows, cols = positions(h, patch[0], stride[0]), positions(w, patch[1], stride[1])
    grid_PQ2 = np.stack(np.meshgrid(rows, cols, indexing="ij"), axis=-1).astype(np.int32)
    p, q = len(rows), len(cols)
    host = _host(n, p * q, model.input_shape)
    run = functools.partial(_evaluate, model, params, images_NHWC, labels, fill_HWC, patch=patch, layer=layer,
                            method=method, tau=tau, score=score, memory_budget=memory_budget, host=host, mesh=mesh,
                            progress=progress)
    if coarse_stride is None:
        out, base, _ = run(starts_NT2=np.broadcast_to(grid_PQ2.reshape(1, p * q, 2), (n, p * q, 2)))
        maps = {k: None if v is None else v.reshape(n, p, q) for k, v in out.items()}
        computed = np.ones((n, p, q), bool)
    else:
        maps, base, computed = _drill_down(run, grid_PQ2, stride, _pair("coarse_stride", coarse_stride),
                                           drill_fraction, n)
    drop_NPQ = base["value"][:, None, None] - maps["value"]
    channel = None if layer is None else base["channel"]
    return OcclusionMaps(rows, cols, patch, maps["prob"], maps["label"], maps["feature"], channel, base["prob"],
                         base["label"], maps["value"], base["value"],
                         captum_attribution(drop_NPQ, rows, cols, patch, (h, w)), computed, score)


def _drill_down(run: Callable, grid_PQ2: np.ndarray, stride: tuple[int, int], coarse: tuple[int, int],
                fraction: float, n: int):
    """Krypton's adaptive drill-down: the coarse grid everywhere, then the fine grid in the
    ``fraction`` of coarse cells with the largest drop of the true-class probability;
    the other fine positions take their coarse cell's (top-left position's) values. The
    cells are ranked on the device, between the two rounds (:func:`_drill_starts`).

    The fraction is counted in positions (``ceil(fraction * cells)`` full cells' worth):
    cells cut by the grid's edge hold fewer positions, so the next cells in order of drop
    fill the budget, the last one possibly in part. Every position runs at most once."""
    if any(c % s or c <= s for c, s in zip(coarse, stride)):
        raise ValueError(f"coarse_stride must be a multiple of stride larger than it, got coarse_stride={coarse} "
                         f"with stride={stride}")
    if not 0 < fraction <= 1:
        raise ValueError(f"drill_fraction must be in (0, 1], got {fraction!r}")
    p, q = grid_PQ2.shape[:2]
    # a cell wider than the grid holds the grid's positions only: no offset past its end
    m = (min(coarse[0] // stride[0], p), min(coarse[1] // stride[1], q))
    if m == (p, q):
        raise ValueError(f"coarse_stride={coarse} makes one coarse cell of the whole {p}x{q} grid of stride "
                         f"{stride}: nothing to drill into; use a smaller coarse_stride (or none)")
    cell_rows, cell_cols = np.arange(0, p, m[0]), np.arange(0, q, m[1])
    pc, qc = len(cell_rows), len(cell_cols)
    offsets = np.array([(u, v) for u in range(m[0]) for v in range(m[1]) if (u, v) != (0, 0)])
    # each cell's fine positions besides its top-left one; cells cut by the grid's edge hold fewer
    fine_rows = cell_rows[:, None, None] + offsets[None, None, :, 0]
    fine_cols = cell_cols[None, :, None] + offsets[None, None, :, 1]
    inside = ((fine_rows < p) & (fine_cols < q)).reshape(pc * qc, -1)
    fine = grid_PQ2[np.minimum(fine_rows, p - 1), np.minimum(fine_cols, q - 1)].reshape(pc * qc, -1, 2)
    # the budget, in positions: a full cell's worth per drilled cell, so that edge cells
    # (fewer positions) leave room for the next cell in line and no position runs twice
    count = min(math.ceil(fraction * pc * qc) * len(offsets), int(inside.sum()))
    coarse_starts = grid_PQ2[np.ix_(cell_rows, cell_cols)].reshape(1, pc * qc, 2)
    out, base, starts = run(starts_NT2=np.broadcast_to(coarse_starts, (n, pc * qc, 2)), refine=(count, fine, inside))
    rows, cols = starts[:, pc * qc:, 0] // stride[0], starts[:, pc * qc:, 1] // stride[1]
    upsample = (np.arange(p) // m[0])[:, None] * qc + (np.arange(q) // m[1])[None, :]
    images = np.arange(n)[:, None]
    maps = {}
    for name, values in out.items():
        if values is not None:
            maps[name] = values[:, upsample]
            maps[name][images, rows, cols] = values[:, pc * qc:]
        else:
            maps[name] = None
    computed = np.zeros((n, p, q), bool)
    computed[:, cell_rows[:, None], cell_cols[None, :]] = True
    computed[images, rows, cols] = True
    return maps, base, computed


def captum_attribution(drop_NPQ, rows_P, cols_Q, patch: tuple[int, int], image_hw: tuple[int, int]) -> np.ndarray:
    """Per pixel, the mean drop over the occluder positions covering it (Captum's ``Occlusion``).

    Occluder windows are separable, so with ``R[i, y] = 1`` where position row ``i``
    covers pixel row ``y`` (likewise ``C`` for columns) the sum of drops is
    ``R.T @ drop @ C`` and the count of windows ``outer(R.sum(0), C.sum(0))``. Pixels
    no window covers get 0.
    """
    rows_P, cols_Q = np.asarray(rows_P), np.asarray(cols_Q)
    patch, image_hw = _pair("patch", patch), _pair("image_hw", image_hw)
    shape = np.shape(drop_NPQ)
    if len(shape) != 3 or shape[1:] != (len(rows_P), len(cols_Q)):
        raise ValueError(f"drop_NPQ must have shape (N, {len(rows_P)}, {len(cols_Q)}), one value per image and "
                         f"occluder row and column, got {shape}")

    def cover(starts, size, length):
        pixels = np.arange(length)
        return ((pixels >= starts[:, None]) & (pixels < starts[:, None] + size)).astype(np.float64)

    r, c = cover(np.asarray(rows_P), patch[0], image_hw[0]), cover(np.asarray(cols_Q), patch[1], image_hw[1])
    total = np.einsum("py,npq,qx->nyx", r, np.asarray(drop_NPQ, np.float64), c)
    count = np.outer(r.sum(0), c.sum(0))
    return np.divide(total, count, out=np.zeros_like(total), where=count > 0).astype(np.float32)


def summary(maps: OcclusionMaps) -> dict[str, np.ndarray]:
    """Per image: how much occlusion can hurt and where.

    Returns arrays of shape ``(N,)``: ``base_prob`` and ``min_prob`` (true-class
    probability unoccluded and at the worst position), ``drop`` (their difference),
    ``row``, ``col`` (centre of the worst occluder's part inside the image, in pixels),
    ``peak_row``, ``peak_col`` (the pixel of largest attribution) and ``flipped`` (the fraction of
    positions where the most probable class is not the unoccluded prediction).
    """
    if not isinstance(maps, OcclusionMaps):
        raise ValueError(f"summary needs the OcclusionMaps of sweep, got {type(maps).__name__}")
    n, p, q = maps.prob_NPQ.shape
    h, w = maps.attribution_NHW.shape[1:]
    worst = maps.prob_NPQ.reshape(n, -1).argmin(axis=1)
    i, j = np.unravel_index(worst, (p, q))
    peak = maps.attribution_NHW.reshape(n, -1).argmax(axis=1)
    peak_row, peak_col = np.unravel_index(peak, maps.attribution_NHW.shape[1:])
    min_prob = maps.prob_NPQ.reshape(n, -1).min(axis=1)
    return {
        "base_prob": maps.base_prob_N, "min_prob": min_prob, "drop": maps.base_prob_N - min_prob,
        "row": (maps.rows_P[i] + np.minimum(maps.rows_P[i] + maps.patch[0], h) - 1) / 2,
        "col": (maps.cols_Q[j] + np.minimum(maps.cols_Q[j] + maps.patch[1], w) - 1) / 2,
        "peak_row": peak_row, "peak_col": peak_col,
        "flipped": (maps.label_NPQ != maps.base_label_N[:, None, None]).mean(axis=(1, 2)),
    }


# ---------------------------------------------------------------------------------------
# Judging approximations


def ssim(a, b, data_range: float | None = None, window: int = 7) -> np.ndarray:
    """Structural similarity of maps ``a`` and reference maps ``b`` (Wang et al. 2004), as
    scikit-image computes it by default.

    Means, variances and the covariance are taken over every ``window x window`` square
    fully inside the maps (uniform weights, sample covariance, ``K1 = 0.01``,
    ``K2 = 0.03``) and the index is averaged over the squares. ``data_range`` defaults to
    each reference map's own range (max - min), at least 0.01: a probability map varying
    over 0.05 is judged on its structure, not against the [0, 1] a probability could
    span, and a nearly flat one on the scale of a 1% change. Leading axes are batch axes.
    """
    _checks.count("window", window, minimum=2)
    if data_range is not None and (isinstance(data_range, bool) or not isinstance(data_range, (int, float, np.number))
                                   or not np.isfinite(data_range) or data_range <= 0):
        raise ValueError(f"data_range must be None or a finite number > 0, got {data_range!r}")
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    _checks.finite(a, "ssim's maps a")
    _checks.finite(b, "ssim's maps b")
    if a.shape != b.shape:
        raise ValueError(f"ssim needs maps of one shape, got {a.shape} and {b.shape}")
    if a.ndim < 2 or min(a.shape[-2:]) < window:
        raise ValueError(f"ssim needs maps of at least {window}x{window} (the window), got shape {a.shape}")
    if data_range is None:
        data_range = np.maximum(b.max(axis=(-2, -1)) - b.min(axis=(-2, -1)), 0.01)[..., None, None]

    def mean(x):
        return np.lib.stride_tricks.sliding_window_view(x, (window, window), axis=(-2, -1)).mean(axis=(-2, -1))

    ma, mb = mean(a), mean(b)
    unbiased = window * window / (window * window - 1)
    va, vb = unbiased * (mean(a * a) - ma * ma), unbiased * (mean(b * b) - mb * mb)
    cov = unbiased * (mean(a * b) - ma * mb)
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    index = (2 * ma * mb + c1) * (2 * cov + c2) / ((ma * ma + mb * mb + c1) * (va + vb + c2))
    return index.mean(axis=(-2, -1))
