"""Any JAX network as a jaxvis model: a plain function, a Flax (linen or nnx) or an Equinox module.

``wrap(apply_fn, params, x_example)`` traces ``apply_fn(params, x_NHWC) -> logits_NK`` to a
jaxpr and returns a :class:`Wrapped`, which offers what jaxvis's methods read from a
:class:`~jaxvis.models.Model`: ``apply(params, x, rule, until, at) -> (logits, trace)``,
layer ``names``, ``shapes``, receptive ``fields``, ``layer(name)`` (its kind's flags),
``normalize``, ``check_layer``, ``check_params``. :func:`wrap_linen`, :func:`wrap_nnx`
and :func:`wrap_equinox` adapt a framework's module to that call.

Rules (Zeiler & Fergus Sec. 2.1; Springenberg et al. 2015) without hooks: every ReLU on
the input's path, ``jax.nn.relu`` or ``jnp.maximum(x, 0)``, also inside nested ``jit``,
``custom_jvp``, ``jax.checkpoint``, ``scan`` and ``cond`` bodies, is replaced by the
rule's custom-VJP ReLU while the jaxpr is interpreted (:mod:`jaxvis._jaxpr`); the user's
code and JAX's state are untouched. Max pools are ``reduce_window`` max, whose VJP routes
the signal to each window's (first) maximum: the switches; the interpreter evaluates them
through their switches (:func:`jaxvis._jaxpr.switched_max`), whose VJP routes the same
way by dense masking, several times faster on XLA:CPU. The ``deconvnet`` and
``guided`` rules are refused, with the place named, where the network has no ReLU or
has activations the rules do not define (tanh, sigmoid, GELU's erf, leaky ReLU's
select, ...), since their plain gradient would pass silently.

Layers are the outputs of convolutions and dense products (with their bias), ReLUs, max
and sum pools, flattens and residual sums. A conv or dense layer is named after its
kernel's path in ``params`` (``conv1``, ``params/block1/conv`` -> ``block1/conv``,
Equinox's ``layers/0``), the others after the framework's name scope (Flax linen records
module paths) and their kind, counted: ``relu1``, ``pool1``, ``block1/add1``. Print
:meth:`Wrapped.listing` to choose one. Activations are presented NHWC; a receptive field
is derived from the convolutions' and pools' kernels, strides and paddings where the
input's rows and columns can be followed to the layer.
"""

from __future__ import annotations

import collections
import dataclasses
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxvis import _checks, _jaxpr, rules
from jaxvis.models import Model, ReceptiveField, Trace, check_at

_TRACE_ERRORS = (jax.errors.ConcretizationTypeError, jax.errors.TracerBoolConversionError,
                 jax.errors.TracerIntegerConversionError, jax.errors.TracerArrayConversionError)
_ANALYSIS_BATCH = 2  # the listing is read at this batch size, where the batch axis is not a unit axis
_VARIABLE_FIELDS = ("value", "raw_value")  # nnx's field for a variable's array, not part of the layer's path


def _key_name(key) -> str:
    for attr in ("key", "name", "idx"):
        if hasattr(key, attr):
            return str(getattr(key, attr))
    return str(key)


def _param_name(path) -> str | None:
    """A layer's name from its kernel's path: the path without its leaf (``kernel``,
    ``weight``), without nnx's ``value`` and without linen's leading ``params``."""
    parts = [_key_name(k) for k in path]
    while parts and parts[-1] in _VARIABLE_FIELDS:
        parts.pop()
    parts = parts[:-1]
    if parts and parts[0] == "params":
        parts = parts[1:]
    return "/".join(parts) or None


def _dtype(v) -> np.dtype:
    return np.dtype(v.dtype) if hasattr(v, "dtype") else np.result_type(v)


def _signature(params) -> tuple:
    leaves, treedef = jax.tree_util.tree_flatten(params)
    return treedef, tuple((tuple(np.shape(v)), _dtype(v)) for v in leaves)


@dataclasses.dataclass(frozen=True)
class WrappedLayer:
    """One layer of a wrapped network (:meth:`Wrapped.layer`): its name, kind (``conv``,
    ``dense``, ``relu``, ``pool``, ``avgpool``, ``flatten``, ``add``), output shape per
    example, receptive field (None where none was derived) and, for conv and pool layers,
    ``geometry``: kernel, stride, padding (convolutions: also dilation, groups, features).
    Its flags answer as a :class:`jaxvis.kinds.Layer`'s do."""

    name: str
    kind: str
    shape: tuple[int, ...]
    field: ReceptiveField | None
    geometry: dict

    @property
    def rectifier(self) -> bool:
        return self.kind == "relu"

    @property
    def pooling(self) -> bool:
        return self.kind == "pool"

    @property
    def convolution(self) -> bool:
        return self.kind == "conv"

    @property
    def windowed(self) -> bool:
        return self.kind in ("conv", "pool", "avgpool")


class Wrapped:
    """A traced network with the surface of a :class:`~jaxvis.models.Model`.

    Build it with :func:`wrap`. Attributes: ``name``, ``input_shape`` (H, W, C),
    ``names`` (layers in order), ``shapes`` (each layer's output per example, NHWC for
    maps), ``kinds``, ``fields`` (receptive fields where derivable), ``num_classes``,
    ``relus`` (how many ReLUs the rules replace), ``mean``, ``std``, ``channel_order``.
    Hashed by identity, so that it can be a static argument of ``jax.jit``.
    """

    def __init__(self, apply_fn: Callable, params, x_example, name: str, mean, std, channel_order: str):
        if not callable(apply_fn):
            raise ValueError(f"apply_fn must be a function (params, x_NHWC) -> logits, got {type(apply_fn).__name__}")
        shape = np.shape(x_example)
        dtype = _dtype(x_example)
        if len(shape) != 4 or dtype.kind != "f":
            raise ValueError(f"x_example must be a float batch of images (N, H, W, C), NHWC as the rest of jaxvis "
                             f"takes them, got {dtype} of shape {shape}")
        for leaf in jax.tree_util.tree_leaves(params):
            if not hasattr(leaf, "shape") or not hasattr(leaf, "dtype"):
                raise ValueError(f"params must be a pytree of arrays, got a leaf {type(leaf).__name__} {leaf!r}")
        # a Model without layers holds the checked normalization (normalize, denormalize)
        self._pixels = Model(name, (), tuple(shape[1:]), mean, std, channel_order)
        self.name, self.input_shape = name, self._pixels.input_shape
        self.mean, self.std, self.channel_order = self._pixels.mean, self._pixels.std, channel_order
        self.apply_fn = apply_fn
        self._signature = _signature(params)
        with_path = jax.tree_util.tree_flatten_with_path(params)[0]
        self._paths = [jax.tree_util.keystr(p) for p, _ in with_path]
        self._param_names = [_param_name(p) for p, _ in with_path]
        self._jaxprs: dict[tuple, Any] = {}
        closed = self._jaxpr(params, jax.ShapeDtypeStruct((_ANALYSIS_BATCH, *self.input_shape), dtype))
        walk = _jaxpr.Walk(None, self._param_names)
        walk.run(closed, [None] * len(closed.jaxpr.invars))
        out = closed.jaxpr.outvars
        if len(out) != 1 or len(out[0].aval.shape) != 2 or out[0].aval.shape[0] != _ANALYSIS_BATCH:
            given = [tuple(v.aval.shape) for v in out]
            raise ValueError(f"apply_fn must return one array of logits (N, num_classes) for N images; for "
                             f"{_ANALYSIS_BATCH} images it returned {len(out)} array(s) of shapes {given}")
        self.num_classes = int(out[0].aval.shape[1])
        self.relus = walk.relus
        self._kinds = tuple(f.kind for f in walk.found)
        self._steps = tuple(f.steps for f in walk.found)
        self.names = _names(walk.found)
        self.kinds = dict(zip(self.names, self._kinds))
        self._perms = tuple(_nhwc(f) for f in walk.found)
        self.shapes = {n: _present_shape(f.shape, p) for n, f, p in zip(self.names, walk.found, self._perms)}
        self.fields = {n: f.info.field for n, f, p in zip(self.names, walk.found, self._perms)
                       if p is not None and f.info.field is not None}
        self.geometry = {n: f.geometry for n, f in zip(self.names, walk.found) if f.geometry}
        self._obstacles = [(o.what, "/".join(o.scope), None if o.after is None else self.names[o.after])
                           for o in walk.obstacles]

    def __repr__(self) -> str:
        return f"Wrapped({self.name!r}, input_shape={self.input_shape}, {len(self.names)} layers)"

    # --- the listing --------------------------------------------------------------------
    def listing(self) -> str:
        """One line per layer: name, kind, output shape (per example) and receptive field."""
        rows = [("layer", "kind", "shape", "receptive field (size, jump, start)")]
        for name in self.names:
            f = self.fields.get(name)
            rows.append((name, self.kinds[name], str(self.shapes[name]),
                         "-" if f is None else f"{f.size}, {f.jump}, {f.start}"))
        widths = [max(len(r[i]) for r in rows) for i in range(3)]
        lines = ["  ".join(c.ljust(w) for c, w in zip(r[:3], widths)) + "  " + r[3] for r in rows]
        relus = f"{self.relus} ReLU{'s' if self.relus != 1 else ''} replaced by the rules"
        return "\n".join([f"{self.name}: input {self.input_shape}, {self.num_classes} classes, {relus}", *lines])

    def check_layer(self, name: str, spatial: bool = False) -> None:
        """Raise unless ``name`` is a layer (with a receptive field, if ``spatial``)."""
        _checks.choice(f"layer of {self.name}", name, self.names)
        if spatial and name not in self.fields:
            why = (f"has no spatial maps (output shape {self.shapes[name]})" if len(self.shapes[name]) != 3 else
                   "has maps whose rows and columns could not be followed back to the input's "
                   "(a reshape, gather or product in between)")
            raise ValueError(f"layer {name!r} of {self.name} {why}; layers with a receptive field: "
                             f"{[n for n in self.names if n in self.fields]}")

    def layer(self, name: str) -> WrappedLayer:
        """A layer's kind, shape, receptive field and (conv, pool) geometry."""
        self.check_layer(name)
        return WrappedLayer(name, self.kinds[name], self.shapes[name], self.fields.get(name),
                            self.geometry.get(name, {}))

    def receptive_field(self, name: str) -> ReceptiveField:
        self.check_layer(name, spatial=True)
        return self.fields[name]

    @property
    def layers(self):
        raise ValueError(f"{self.name} is a wrapped function, not a jaxvis layer tuple: this method needs the "
                         "tuple (incremental occlusion, receptive-field crops through a padding-free copy); see "
                         "jaxvis.wrap for what wrapped models support")

    # --- normalization ------------------------------------------------------------------
    def normalize(self, pixels):
        """As :meth:`jaxvis.models.Model.normalize`, with this model's mean, std and channel order."""
        return self._pixels.normalize(pixels)

    def denormalize(self, x):
        return self._pixels.denormalize(x)

    # --- parameters and forward pass ----------------------------------------------------
    def check_params(self, params) -> None:
        """Raise unless ``params`` has the tree, shapes and dtypes the model was wrapped with.
        Reads shapes and dtypes only: works under jit."""
        treedef, leaves = self._signature
        try:
            given_def, given = _signature(params)
        except (TypeError, ValueError) as err:
            raise ValueError(f"params do not fit {self.name}: {err}") from None
        if given_def != treedef:
            paths = {jax.tree_util.keystr(p) for p, _ in jax.tree_util.tree_flatten_with_path(params)[0]}
            missing = [p for p in self._paths if p not in paths]
            extra = sorted(paths - set(self._paths))
            raise ValueError(f"params do not fit {self.name}: missing {missing[:8]}, unexpected {extra[:8]} "
                             f"(expected the tree it was wrapped with: {treedef})")
        problems = [f"params{path}: expected {s} {d}, got {gs} {gd}"
                    for path, (s, d), (gs, gd) in zip(self._paths, leaves, given) if (s, d) != (gs, gd)]
        if problems:
            lines = "\n".join(f"  - {p}" for p in problems)
            raise ValueError(f"params do not fit {self.name}: {len(problems)} leaves differ:\n{lines}")

    def check_rule(self, rule: str) -> None:
        """Raise unless ``rule`` is a rule name that is exact on this network."""
        rules.get(rule)
        if rule == "gradient":
            return
        if not self.relus:
            raise ValueError(f"rule {rule!r} changes how ReLUs pass the signal back, but {self.name} has no ReLU "
                             f"on its input's path (recognised: jax.nn.relu, jnp.maximum(x, 0)); use "
                             f"rule='gradient'")
        if self._obstacles:
            places = "; ".join(f"{what} in {scope or 'the top scope'}" + (f" after layer {after!r}" if after else "")
                               for what, scope, after in self._obstacles[:5])
            raise ValueError(f"rule {rule!r} is defined for ReLUs only, and {self.name} has "
                             f"{len(self._obstacles)} other non-linearit{'ies' if len(self._obstacles) > 1 else 'y'} "
                             f"on its input's path ({places}): their plain gradient would pass silently. Use "
                             f"rule='gradient', or a network whose activations are ReLUs")

    def _jaxpr(self, params, x):
        """The traced network for these parameter and input shapes (cached)."""
        key = (_signature(params), tuple(np.shape(x)), _dtype(x))
        if key not in self._jaxprs:
            specs = jax.tree_util.tree_map(lambda v: jax.ShapeDtypeStruct(np.shape(v), _dtype(v)), (params, x))
            try:
                self._jaxprs[key] = jax.make_jaxpr(self.apply_fn)(*specs)
            except _TRACE_ERRORS as err:
                first = str(err).strip().splitlines()[0]
                raise ValueError(f"apply_fn does not trace: it uses Python control flow or conversions on array "
                                 f"values ({type(err).__name__}: {first}); write it with jnp.where, "
                                 f"jax.lax.cond or jax.lax.scan") from None
            except Exception as err:  # the user's code failing on these params: say so, with its message
                first = str(err).strip().splitlines()[0] if str(err).strip() else ""
                raise ValueError(f"apply_fn(params, x) fails for x of shape {tuple(np.shape(x))} with these params "
                                 f"({type(err).__name__}: {first}); params must be the tree apply_fn takes, "
                                 f"x NHWC images") from None
        return self._jaxprs[key]

    def apply(self, params, x, rule: str = "gradient", until: str | None = None, at: dict | None = None):
        """Forward pass with every ReLU taking ``rule``'s backward pass. Returns ``(logits, trace)``.

        ``trace.activations`` maps each layer name to its output (NHWC for maps);
        ``trace.switches`` is empty (the pools' VJP holds them). With ``until``, the first
        output is that layer's output. ``at`` maps layer names to deltas shaped as the
        trace's outputs, added to them before the layers above read them, as in
        :meth:`jaxvis.models.Model.apply`: the derivative with respect to a zero delta is
        Grad-CAM's ``dS/dA`` (also across skip connections).
        """
        self.check_params(params)
        _checks.images(x, self.input_shape)
        self.check_rule(rule)
        if until is not None:
            self.check_layer(until)
        check_at(self, at, np.shape(x)[0])
        deltas = {}
        for name, delta in (at or {}).items():
            i = self.names.index(name)
            deltas[i] = delta if self._perms[i] is None else jnp.transpose(delta, np.argsort(self._perms[i]))
        closed = self._jaxpr(params, x)
        walk = _jaxpr.Walk(rules.get(rule), self._param_names, deltas, self._steps)
        (logits,) = walk.run(closed, [*jax.tree_util.tree_leaves(params), x])
        if tuple(f.kind for f in walk.found) != self._kinds:
            raise ValueError(f"apply_fn traces to other layers for images of shape {tuple(np.shape(x))} than for "
                             f"the example: {[f.kind for f in walk.found]} against {list(self._kinds)}")
        activations = {name: _present(walk.values[i], perm) for i, (name, perm) in
                       enumerate(zip(self.names, self._perms))}
        return (logits if until is None else activations[until]), Trace(activations, {})


def _names(found) -> tuple[str, ...]:
    """Layer names: a kernel's path, else the name scope (less what all layers share) and
    the kind, counted per scope; repeats get ``#2``, ``#3``."""
    scopes = [f.scope for f in found]
    common = 0
    while scopes and all(len(s) > common and s[common] == scopes[0][common] for s in scopes):
        common += 1
    counts, used, names = collections.Counter(), collections.Counter(), []
    for f in found:
        scope = f.scope[common:]
        if f.param and f.kind in ("conv", "dense"):
            base = f.param
        else:
            counts[scope, f.kind] += 1
            base = "/".join((*scope, f"{f.kind}{counts[scope, f.kind]}"))
        used[base] += 1
        names.append(base if used[base] == 1 else f"{base}#{used[base]}")
    return tuple(names)


def _nhwc(found) -> tuple[int, ...] | None:
    """The transpose that puts a layer output in (batch, row, column, channel) order, or
    (batch, features); None where it is unknown or the identity."""
    roles = dict(found.info.axes)
    if len(found.shape) == 2 and roles.get("n", 0) == 1:
        return (1, 0)
    if len(found.shape) != 4 or "h" not in roles or "w" not in roles:
        return None
    rest = [a for a in range(4) if a not in (roles["h"], roles["w"])]
    n = roles.get("n", rest[0] if roles.get("c") != rest[0] else rest[1])
    c = next(a for a in rest if a != n)
    return (n, roles["h"], roles["w"], c)


def _present_shape(shape, perm) -> tuple[int, ...]:
    return tuple(shape[a] for a in perm[1:]) if perm is not None else tuple(shape[1:])


def _present(value, perm):
    return value if perm is None or perm == tuple(range(len(perm))) else jnp.transpose(value, perm)


# ---------------------------------------------------------------------------------------
# Entry points


def wrap(apply_fn: Callable, params, x_example, name: str = "wrapped", mean=(0.0,), std=(1.0,),
         channel_order: str = "RGB") -> Wrapped:
    """A jaxvis model from ``apply_fn(params, x_NHWC) -> logits_NK``.

    Args:
      apply_fn: a traceable function of the parameters and a batch of normalized images.
      params: its parameters (any pytree of arrays); later calls must pass the same tree
        and shapes.
      x_example: a float batch ``(N, H, W, C)``: the input shape the model takes.
      name: the model's name in messages and figures.
      mean, std, channel_order: the input normalization, as :class:`~jaxvis.models.Model`'s.
    """
    if not isinstance(name, str):
        raise ValueError(f"name must be a string, got {type(name).__name__} {name!r}")
    return Wrapped(apply_fn, params, x_example, name, mean, std, channel_order)


def wrap_linen(module, variables, x_example, **kwargs) -> tuple[Wrapped, Any]:
    """A Flax linen module with its variables (``module.init``'s result). Returns the
    wrapped model and its params, which are the variables. Layer names follow the module
    paths."""
    import flax.linen as nn
    if not isinstance(module, nn.Module):
        raise ValueError(f"module must be a flax.linen.Module, got {type(module).__name__}")
    model = wrap(lambda v, x: module.apply(v, x), variables, x_example, **{"name": type(module).__name__, **kwargs})
    return model, variables


def wrap_nnx(module, x_example, **kwargs) -> tuple[Wrapped, Any]:
    """A Flax nnx module: returns the wrapped model and its params (``nnx.split``'s state),
    to pass to ``apply`` and every method."""
    from flax import nnx
    if not isinstance(module, nnx.Module):
        raise ValueError(f"module must be a flax.nnx.Module, got {type(module).__name__}")
    graphdef, state = nnx.split(module)
    model = wrap(lambda s, x: nnx.merge(graphdef, s)(x), state, x_example,
                 **{"name": type(module).__name__, **kwargs})
    return model, state


def wrap_equinox(module, x_example, channels_first: bool = True, **kwargs) -> tuple[Wrapped, Any]:
    """An Equinox module, called on one image (CHW when ``channels_first``, as
    ``eqx.nn.Conv2d`` takes it) and vmapped over the batch; images stay NHWC outside.
    Returns the wrapped model and its params (the module's arrays, ``eqx.partition``)."""
    import equinox as eqx
    if not isinstance(module, eqx.Module):
        raise ValueError(f"module must be an equinox.Module, got {type(module).__name__}")
    params, static = eqx.partition(module, eqx.is_array)

    def apply_fn(p, x_NHWC):
        x = jnp.transpose(x_NHWC, (0, 3, 1, 2)) if channels_first else x_NHWC
        return jax.vmap(eqx.combine(p, static))(x)

    return wrap(apply_fn, params, x_example, **{"name": type(module).__name__, **kwargs}), params
