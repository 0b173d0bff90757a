"""Projection of chosen activations back to pixel space (Zeiler & Fergus Sec. 2.1).

To examine one activation, keep it, zero every other activation of its layer, and pass
the result down: unpool through the switches, rectify, filter with the transposed
filters, layer by layer, to the input. Two paths compute this:

- :func:`project`, the one the rest of jaxvis calls: ``jax.vjp`` through the forward
  pass with a ReLU backward rule (``deconvnet``, ``guided`` or ``gradient``). Max-pool's
  VJP routes through the switches and convolution's VJP is the transposed filter, so
  with the ``deconvnet`` rule the VJP *is* the deconvnet.
- :func:`project_explicit`, the paper's procedure written out layer by layer with
  :func:`~jaxvis.layers.unpool`, :func:`~jaxvis.layers.unrelu` and
  :func:`~jaxvis.layers.deconv`, each kind's step down (:mod:`jaxvis.kinds`): the
  readable reference and the test oracle. The paper does not say what contrast
  normalization does on the way down; here it applies the normalization layer's
  vector-Jacobian product at the forward input.

What to project is a :class:`Select`: one unit, the strongest unit of a map (the
paper's choice), or a whole map. Selections are pytrees of integer arrays.

Many projections at once: :func:`project_batch`, one image and one selection per row,
checks every value (pixels finite, indices in range) and then runs one jitted ``vmap``.
Under ``jit``/``vmap`` values are traced and cannot be checked, so :func:`project`
called there only makes an out-of-range selection project to NaN, never to a
plausible zero.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Literal

import jax
import jax.numpy as jnp
import numpy as np

from jaxvis import _checks, rules
from jaxvis.kinds import INPUT
from jaxvis.models import Model, Params

Mode = Literal["unit", "strongest", "map"]
MODES = ("unit", "strongest", "map")


@functools.partial(jax.tree_util.register_dataclass, data_fields=["channel", "row", "col"],
                   meta_fields=["mode"])
@dataclasses.dataclass(frozen=True)
class Select:
    """Which activations of a layer to keep (all others are zeroed).

    - ``Select.unit(c, i, j)``: the unit at row ``i``, column ``j`` of map ``c``
      (for a dense layer: ``Select.unit(c)``);
    - ``Select.strongest(c)``: the strongest unit of map ``c`` (Zeiler & Fergus);
    - ``Select.map(c)``: every unit of map ``c``.

    Fields may be arrays of equal shape, one entry per image: :func:`project_batch`
    projects each entry.
    """

    mode: Mode
    channel: jax.Array
    row: jax.Array
    col: jax.Array

    @classmethod
    def unit(cls, channel, row=0, col=0) -> Select:
        return cls("unit", *_as_index(channel, row, col))

    @classmethod
    def strongest(cls, channel) -> Select:
        return cls("strongest", *_as_index(channel, 0, 0))

    @classmethod
    def map(cls, channel) -> Select:
        return cls("map", *_as_index(channel, 0, 0))

    def mask(self, act_HWC) -> jax.Array:
        """1 where an activation is kept, 0 elsewhere, for one example's activations."""
        act = act_HWC if act_HWC.ndim == 3 else act_HWC[None, None]
        h, w, c = act.shape
        in_map = (jnp.arange(c) == self.channel).reshape(1, 1, c)
        if self.mode == "map":
            keep = jnp.broadcast_to(in_map, act.shape)
        else:
            if self.mode == "unit":
                row, col = self.row, self.col
            else:
                flat = jnp.argmax(act[:, :, self.channel].ravel())
                row, col = flat // w, flat % w
            at = (jnp.arange(h).reshape(h, 1, 1) == row) & (jnp.arange(w).reshape(1, w, 1) == col)
            keep = at & in_map
        return keep.reshape(act_HWC.shape).astype(act.dtype)

    def valid(self, shape: tuple[int, ...]) -> jax.Array:
        """True where the selection names a unit of a layer whose output (one example) has
        ``shape``; traced values allowed."""
        ok = (self.channel >= 0) & (self.channel < shape[-1])
        if self.mode == "unit":
            h, w = shape[:2] if len(shape) == 3 else (1, 1)
            ok = ok & (self.row >= 0) & (self.row < h) & (self.col >= 0) & (self.col < w)
        return ok


def _as_index(*values):
    """Integer arrays broadcast to one shape, so that ``vmap`` maps every field."""
    arrays = [v if isinstance(v, jax.Array) else np.asarray(v) for v in values]  # tracers are jax.Arrays
    for name, a in zip(("channel", "row", "col"), arrays):
        if not np.issubdtype(a.dtype, np.integer):
            raise ValueError(f"a selection's {name} must be an integer, got dtype {a.dtype}"
                             + (f" value {np.asarray(a).tolist()!r}" if _checks.is_concrete(a) and a.size < 10 else ""))
    shapes = [np.shape(a) for a in arrays]
    try:
        np.broadcast_shapes(*shapes)
    except ValueError:
        raise ValueError(f"a selection's channel, row and col must broadcast to one shape, got shapes {shapes}") from None
    return tuple(jnp.broadcast_arrays(*(jnp.asarray(a, jnp.int32) for a in arrays)))


def check_select(model: Model, layer: str, select: Select) -> None:
    """Raise a ``ValueError`` for an unknown layer or mode, or an index out of range."""
    if not isinstance(select, Select):
        raise ValueError(f"select must be a Select (Select.unit, .strongest or .map), got {type(select).__name__}")
    model.check_layer(layer)
    _checks.choice("selection mode", select.mode, MODES)
    shape = model.shapes[layer]
    if len(shape) == 1 and select.mode != "unit":
        raise ValueError(f"layer {layer!r} is dense (shape {shape}); only Select.unit(index) applies to it")
    _checks.index(f"channel of layer {layer!r}", select.channel, shape[-1])
    if select.mode == "unit" and len(shape) == 1:
        _checks.index(f"row of dense layer {layer!r}", select.row, 1)
        _checks.index(f"col of dense layer {layer!r}", select.col, 1)
    if select.mode == "unit" and len(shape) == 3:
        _checks.index(f"row of layer {layer!r}", select.row, shape[0])
        _checks.index(f"col of layer {layer!r}", select.col, shape[1])


def backward_bytes(model: Model, layer: str | None = None) -> int:
    """Bytes that one example's forward and backward pass up to ``layer`` (default: the
    whole network) holds at its peak, in float32: the input and every activation, kept for
    the backward pass, and about as much again for the signal on the way down."""
    if layer is not None:
        model.check_layer(layer)
    upto = model.names if layer is None else model.names[:model.names.index(layer) + 1]
    return 2 * 4 * (math.prod(model.input_shape) + sum(math.prod(model.shapes[n]) for n in upto))


def strongest_map(act_HWC) -> jax.Array:
    """The channel of a layer's activations (one image) holding its largest value."""
    if np.ndim(act_HWC) != 3:
        raise ValueError(f"strongest_map takes one image's activations (H, W, C), got shape {np.shape(act_HWC)}")
    return jnp.argmax(act_HWC.reshape(-1, act_HWC.shape[-1]).max(axis=0))


def project_strongest(model: Model, params: Params, x_NHWC, layer: str, rule: str = "deconvnet"):
    """For each image, its strongest map of ``layer`` projected alone (the paper's
    single-image view). Returns ``(projections_NHWC, channels_N)``."""
    _batch(model, x_NHWC)
    model.check_layer(layer, spatial=True)
    _checks.choice("rule", rule, rules.RULES)
    return _project_strongest(model, params, x_NHWC, layer, rule)


@functools.partial(jax.jit, static_argnames=("model", "layer", "rule"))
def _project_strongest(model: Model, params: Params, x_NHWC, layer: str, rule: str):
    _, trace = model.apply(params, x_NHWC, until=layer)
    channels = jax.vmap(strongest_map)(trace.activations[layer])
    return _project_batch(model, params, x_NHWC, layer, Select.strongest(channels), rule), channels


def _batch(model: Model, x_NHWC) -> None:
    _checks.images(x_NHWC, model.input_shape)
    if not np.shape(x_NHWC)[0]:
        raise ValueError(f"images must hold at least one image, got shape {np.shape(x_NHWC)}")


def project_batch(model: Model, params: Params, x_NHWC, layer: str, select: Select,
                  rule: str = "deconvnet") -> jax.Array:
    """:func:`project` for a batch: image ``n`` with selection ``n``, shape ``x_NHWC.shape``.

    The entry point for many projections: it checks the images (shape, finite pixels),
    the layer, the rule and every index of ``select`` against the layer, then runs one
    jitted ``vmap``. Each field of ``select`` is a scalar (the same for every image) or
    has shape ``(N,)``, one entry per image, e.g. ``Select.strongest(jnp.arange(8))``.
    """
    _batch(model, x_NHWC)
    _checks.choice("rule", rule, rules.RULES)
    check_select(model, layer, select)
    n = np.shape(x_NHWC)[0]
    for name in ("channel", "row", "col"):
        shape = np.shape(getattr(select, name))
        if shape not in ((), (n,)):
            raise ValueError(f"a batched selection's {name} must be a scalar or have shape ({n},), one per image, "
                             f"got shape {shape}")
    select = Select(select.mode, *(jnp.broadcast_to(getattr(select, name), (n,))
                                   for name in ("channel", "row", "col")))
    return _project_batch(model, params, jnp.asarray(x_NHWC), layer, select, rule)


@functools.partial(jax.jit, static_argnames=("model", "layer", "rule"))
def _project_batch(model: Model, params: Params, x_NHWC, layer: str, select: Select, rule: str):
    return jax.vmap(functools.partial(_project, model, params, layer=layer, rule=rule))(x_NHWC, select=select)


def _single_image(model: Model, x_HWC) -> None:
    if np.ndim(x_HWC) != 3:
        raise ValueError(f"project takes one image of shape {model.input_shape} (HWC; vmap for a batch), "
                         f"got shape {np.shape(x_HWC)}")
    _checks.images(x_HWC[None], model.input_shape, what="image")


def project(model: Model, params: Params, x_HWC, layer: str, select: Select,
            rule: str = "deconvnet") -> jax.Array:
    """The selected activations of ``layer`` projected to input space, shape ``x_HWC.shape``.

    The kept activations keep their values (the paper passes the feature map, not a unit
    signal), so a unit that is off projects to zero. For many images or selections call
    :func:`project_batch`, which checks them all first. Under ``jit``/``vmap`` values are
    traced and go unchecked: an out-of-range selection then projects to NaN (never to a
    plausible zero), and a NaN pixel to NaN.
    """
    _single_image(model, x_HWC)
    _checks.choice("rule", rule, rules.RULES)
    check_select(model, layer, select)
    return _project(model, params, x_HWC, layer, select, rule)


@functools.partial(jax.jit, static_argnames=("model", "layer", "rule"))
def _project(model: Model, params: Params, x_HWC, layer: str, select: Select, rule: str):
    def features(x):
        return model.apply(params, x[None], rule=rule, until=layer)[0][0]

    act, pullback = jax.vjp(features, x_HWC)
    (reconstruction,) = pullback(act * select.mask(act))
    # traced indices go unchecked: out of range, the mask would be all zero, a plausible projection
    return jnp.where(select.valid(act.shape), reconstruction, jnp.nan)


def project_explicit(model: Model, params: Params, x_HWC, layer: str, select: Select) -> jax.Array:
    """The deconvnet written out: unpool(switches) -> unrelu -> deconv, layer by layer.

    Each layer's kind passes the signal down (:meth:`jaxvis.kinds.Layer.invert`). At an
    addition the signal goes down every branch whole; where branches leave one layer
    (a residual block's input feeds its convolutions and its shortcut), the signals
    they bring back add up. Both are what the vector-Jacobian product does, so this is
    equal to ``project(..., rule="deconvnet")`` to float tolerance; kept as the paper's
    readable procedure and as the oracle that tests :func:`project` against.
    """
    _single_image(model, x_HWC)
    check_select(model, layer, select)
    x = x_HWC[None]
    _, trace = model.apply(params, x, until=layer)
    outputs = {INPUT: x, **trace.activations}
    act = trace.activations[layer][0]
    signals = {layer: (act * select.mask(act))[None]}
    for spec in reversed(model.layers[:model.names.index(layer) + 1]):
        if spec.name not in signals:
            continue  # no path from this layer up to the selected one
        inputs = model.sources[spec.name]
        down = spec.invert(params.get(spec.name), signals.pop(spec.name), tuple(outputs[n] for n in inputs), trace)
        for name, signal in zip(inputs, down):
            signals[name] = signals[name] + signal if name in signals else signal
    return jnp.where(select.valid(act.shape), signals[INPUT][0], jnp.nan)  # as project: traced indices go unchecked
