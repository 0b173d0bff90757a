"""Reading a traced network: its layers, their geometry, and its ReLUs swapped for a rule's.

:func:`walk` interprets a jaxpr equation by equation. Alongside the values it follows,
for every variable, what it is (:class:`Info`): whether it depends on the network's
input, whether it is an all-zero constant, which parameter it comes from, where its
batch, row, column and channel axes are, and its receptive field. From that it:

- replaces every ReLU on the input's path, ``max(x, 0)`` (``jnp.maximum(x, 0)``, the body
  of ``jax.nn.relu``'s ``custom_jvp``, or a ``custom_vjp`` whose body is that ReLU alone),
  by the rule's ReLU (:mod:`jaxvis.rules`), also inside ``jit``, ``custom_jvp``, ``remat``
  (``jax.checkpoint``, kept), ``scan`` and ``cond`` bodies;
- records the outputs of the layers it recognises, named by their parameters' paths or
  the framework's name stack (:class:`Found`);
- lists what stands in a rule's way: activations the rules do not define (tanh, GELU's
  erf, leaky ReLU's select, ...) and ReLUs behind a ``custom_vjp`` of the user's own.

The same walk runs once without values (analysis: the layer listing) and once per
traced input shape with values (the rewritten forward pass); every decision depends
only on the jaxpr and on :class:`Info`, so both walks find the same layers in the same
order.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.extend import core as jcore

from jaxvis.models import ReceptiveField

#: Count-preserving shape changes that a conv or dense layer's output may pass through
#: before its bias (Equinox squeezes the batch axis it added, a vmapped product transposes).
SHAPE_OPS = ("reshape", "squeeze", "expand_dims", "transpose", "convert_element_type", "copy")
#: Element-wise primitives: the output keeps the layout and receptive field of its inputs.
ELEMENTWISE = ("add", "sub", "mul", "div", "neg", "max", "min", "exp", "exp2", "expm1", "log", "log1p", "tanh",
               "logistic", "erf", "erfc", "erf_inv", "abs", "sign", "sqrt", "rsqrt", "cbrt", "integer_pow", "pow",
               "square", "select_n", "clamp", "convert_element_type", "copy", "stop_gradient", "reduce_precision")
#: Non-linear activations the ReLU rules define no backward pass for.
ACTIVATIONS = ("tanh", "logistic", "erf", "erfc", "erf_inv", "exp", "exp2", "expm1", "log", "log1p", "abs", "sign")
#: Primitives whose bodies are interpreted in line.
INLINED = ("jit", "pjit", "closed_call", "core_call")


@dataclasses.dataclass(frozen=True)
class Info:
    """What a variable of the traced network is.

    ``axes`` maps ``"n"``, ``"h"``, ``"w"``, ``"c"`` to axis positions where known;
    ``field`` is the receptive field of the ``h``, ``w`` axes; ``layer`` the index of the
    layer whose output this is while a bias may still be added to it (``open``).
    """

    dep: bool = False
    zero: bool = False
    param: str | None = None
    axes: tuple[tuple[str, int], ...] = ()
    field: ReceptiveField | None = None
    layer: int | None = None
    open: bool = False

    def axis(self, role: str) -> int | None:
        return dict(self.axes).get(role)


@dataclasses.dataclass
class Found:
    """A recognised layer: its kind, scope (name stack), parameter, output info and shape
    (with the batch axis) and, for conv and pool layers, its geometry."""

    kind: str
    scope: tuple[str, ...]
    param: str | None
    info: Info
    shape: tuple[int, ...]
    geometry: dict
    steps: int = 0


@dataclasses.dataclass
class Obstacle:
    """Something that keeps a ReLU rule from being exact: ``what`` in name scope ``scope``,
    after the layer numbered ``after`` (None: before the first layer)."""

    what: str
    scope: tuple[str, ...]
    after: int | None


def scope_of(eqn) -> tuple[str, ...]:
    """The equation's name scopes that name modules: Flax linen's module names, not
    Equinox's class names (``eqx.nn.Conv2d``), which say nothing of where a layer sits."""
    return tuple(e.name for e in eqn.source_info.name_stack.stack
                 if type(e).__name__ == "Scope" and "." not in e.name)


def is_zero(value) -> bool:
    """True for a concrete all-zero array (a literal or a closed-over constant)."""
    if value is None or isinstance(value, jax.core.Tracer):
        return False
    array = np.asarray(value)
    return array.dtype.kind in "iuf" and array.size > 0 and not np.any(array)


def _reshape_axes(in_shape, out_shape, axes) -> tuple[tuple[str, int], ...]:
    """Where each tracked axis of size > 1 lands when a reshape keeps it whole (others are dropped)."""
    before_in = np.cumprod((1, *in_shape))
    before_out = np.cumprod((1, *out_shape))
    moved = []
    for role, a in axes:
        if in_shape[a] == 1:
            continue
        match = [j for j in range(len(out_shape)) if before_out[j] == before_in[a] and out_shape[j] == in_shape[a]]
        if len(match) == 1:
            moved.append((role, match[0]))
    return tuple(moved)


def _window_field(field: ReceptiveField, kernel, stride, pad_lo, dilation) -> ReceptiveField:
    """A sliding window's step (conv or pool) of a receptive field, per spatial axis."""
    k = [(kk - 1) * d + 1 for kk, d in zip(kernel, dilation)]
    return ReceptiveField(tuple(field.size[a] + (k[a] - 1) * field.jump[a] for a in range(2)),
                          tuple(field.jump[a] * stride[a] for a in range(2)),
                          tuple(field.start[a] - pad_lo[a] * field.jump[a] for a in range(2)))


def _union(fields: Sequence[ReceptiveField]) -> ReceptiveField | None:
    """The field covering several of one grid (a residual sum), None for different grids."""
    if any(f is None or f.jump != fields[0].jump for f in fields):
        return None
    start = tuple(min(f.start[a] for f in fields) for a in range(2))
    end = tuple(max(f.start[a] + f.size[a] for f in fields) for a in range(2))
    return ReceptiveField(tuple(e - s for s, e in zip(start, end)), fields[0].jump, start)


def _product_batch(eqn, infos) -> tuple[tuple[str, int], ...]:
    """Where a dense product puts its activation operand's batch axis (``dot_general``'s
    output: batch dimensions, then the left operand's free ones, then the right's)."""
    (contract_l, contract_r), (batch_l, batch_r) = eqn.params["dimension_numbers"]
    ranks = [len(v.aval.shape) for v in eqn.invars]
    free = [[d for d in range(r) if d not in c and d not in b]
            for r, c, b in zip(ranks, (contract_l, contract_r), (batch_l, batch_r))]
    side = 0 if infos[0].dep else 1
    n = infos[side].axis("n")
    if n is None:
        return ()
    batch = (batch_l, batch_r)[side]
    if n in batch:
        return (("n", list(batch).index(n)),)
    if n in free[side]:
        return (("n", len(batch_l) + (0 if side == 0 else len(free[0])) + free[side].index(n)),)
    return ()


def switched_max(x, window_dimensions, window_strides, padding):
    """``reduce_window`` max through its switches, for any layout: the maximum of each
    window gathered at the first (row-major) position holding it, as
    :func:`jaxvis.layers.max_pool` does for NHWC maps. The VJP routes the signal to the
    same positions as ``reduce_window``'s (``select_and_scatter``, first maximum), but by
    dense masking, which XLA:CPU runs several times faster."""
    xp = lax.pad(x, jnp.array(-jnp.inf, x.dtype), [(lo, hi, 0) for lo, hi in padding])
    out = [(n - k) // s + 1 for n, k, s in zip(xp.shape, window_dimensions, window_strides)]
    views = [lax.slice(xp, offset, [o + (m - 1) * s + 1 for o, m, s in zip(offset, out, window_strides)],
                       window_strides)
             for offset in itertools.product(*(range(k) for k in window_dimensions))]
    switches = jnp.argmax(jnp.stack(views), axis=0)
    zero = jnp.zeros((), x.dtype)
    return sum(jnp.where(switches == k, view, zero) for k, view in enumerate(views))


def _single_relu(closed) -> bool:
    """True when a ``custom_vjp`` body is a ReLU alone (as jaxvis's own rules are)."""
    jaxpr = closed.jaxpr
    while len(jaxpr.eqns) == 1 and jaxpr.eqns[0].primitive.name in INLINED:
        inner = jaxpr.eqns[0].params.get("jaxpr", jaxpr.eqns[0].params.get("call_jaxpr"))
        jaxpr = getattr(inner, "jaxpr", inner)
    if len(jaxpr.invars) != 1 or len(jaxpr.eqns) != 1 or jaxpr.eqns[0].primitive.name != "max":
        return False
    a, b = jaxpr.eqns[0].invars
    consts = dict(zip(jaxpr.constvars, getattr(closed, "consts", ())))
    zero = lambda v: is_zero(v.val) if isinstance(v, jcore.Literal) else is_zero(consts.get(v))
    return (a is jaxpr.invars[0] and zero(b)) or (b is jaxpr.invars[0] and zero(a))


class Walk:
    """One interpretation of a traced network.

    Args:
      relu: the rule's ReLU; None for an analysis walk (no values are computed).
      params: the parameter paths, one per leaf, in the order of the jaxpr's first inputs.
      at: deltas (by layer index, in the traced layout) added to layers' outputs before
        the layers above read them; needs ``steps``.
      steps: per layer, how many equations its output passes (its conv or product, bias,
        reshapes), as an analysis walk counted them in ``Found.steps``.
    """

    def __init__(self, relu: Callable | None, params: Sequence[str | None], at: dict | None = None,
                 steps: Sequence[int] = ()):
        self.relu = relu
        self.params = list(params)
        self.found: list[Found] = []
        self.values: dict[int, jax.Array] = {}
        self.at = dict(at or {})  # layer index -> the delta added to its output
        self.last_step = list(steps)  # per layer, how many equations its output passes (from the analysis)
        self.relus = 0
        self.obstacles: list[Obstacle] = []
        self.quiet = 0  # > 0 inside scan and cond bodies: no layers recorded there

    @property
    def evaluate(self) -> bool:
        return self.relu is not None

    # --- the walk ---------------------------------------------------------------------
    def run(self, closed, args) -> list:
        """The network's outputs for ``args`` (its parameter leaves, then the input)."""
        n = len(self.params)
        infos = [Info(param=p) for p in self.params] + [Info(dep=True, axes=(("n", 0), ("h", 1), ("w", 2), ("c", 3)),
                                                            field=ReceptiveField((1, 1), (1, 1), (0, 0)))
                                                       for _ in closed.jaxpr.invars[n:]]
        return self.jaxpr(closed.jaxpr, closed.consts, args, infos, ())[0]

    def jaxpr(self, jaxpr, consts, args, infos, scope):
        env, meta = {}, {}
        for v, c in zip(jaxpr.constvars, consts):
            env[v], meta[v] = c, Info(zero=is_zero(c))
        for v, a, i in zip(jaxpr.invars, args, infos):
            env[v], meta[v] = a, i

        def read(v):
            if isinstance(v, jcore.Literal):
                return v.val, Info(zero=is_zero(v.val))
            return env[v], meta[v]

        for eqn in jaxpr.eqns:
            ins, in_infos = zip(*map(read, eqn.invars)) if eqn.invars else ((), ())
            outs, out_infos = self.eqn(eqn, list(ins), list(in_infos), scope + scope_of(eqn))
            for v, value, info in zip(eqn.outvars, outs, out_infos):
                if not isinstance(v, jcore.DropVar):
                    env[v], meta[v] = value, info
        results = [read(v) for v in jaxpr.outvars]
        return [r[0] for r in results], [r[1] for r in results]

    def bind(self, eqn, ins):
        if not self.evaluate:
            return [None] * len(eqn.outvars)
        p = eqn.params
        if (eqn.primitive.name == "reduce_window_max" and jnp.issubdtype(eqn.invars[0].aval.dtype, jnp.floating)
                and all(d == 1 for d in (*p["base_dilation"], *p["window_dilation"]))):
            return [switched_max(ins[0], p["window_dimensions"], p["window_strides"], p["padding"])]
        out = eqn.primitive.bind(*ins, **eqn.primitive.get_bind_params(eqn.params))
        return list(out) if eqn.primitive.multiple_results else [out]

    def eqn(self, eqn, ins, infos, scope):
        name = eqn.primitive.name
        dep = any(i.dep for i in infos)
        if name in INLINED:
            closed = eqn.params.get("jaxpr", eqn.params.get("call_jaxpr"))
            return self.jaxpr(closed.jaxpr, closed.consts, ins, infos, scope)
        if name == "custom_jvp_call":
            body = eqn.params["call_jaxpr"]
            relus, _ = self.survey(body, infos)
            if relus:  # inlined: the ReLUs inside take the rule, the body's own JVP rule is dropped
                return self.jaxpr(body.jaxpr, body.consts, ins, infos, scope)
            return self.opaque(eqn, ins, infos, scope, body)
        if name == "custom_vjp_call":
            body = eqn.params["call_jaxpr"]
            if dep and len(ins) == 1 and _single_relu(body):
                return self.rectify(eqn, ins[0], infos[0], scope)
            relus, _ = self.survey(body, infos)
            if relus and dep:
                self.obstacles.append(self.obstacle("a ReLU inside a custom_vjp function (its own backward rule "
                                                    "overrides the ReLU rule)", scope))
            return self.opaque(eqn, ins, infos, scope, body)
        if name in ("remat", "remat2", "checkpoint"):
            return self.remat(eqn, ins, infos, scope)
        if name == "scan":
            return self.scan(eqn, ins, infos, scope)
        if name == "cond":
            return self.cond(eqn, ins, infos, scope)
        if list(jcore.jaxprs_in_params(eqn.params)):
            return self.opaque(eqn, ins, infos, scope, None)
        if name == "max" and len(ins) == 2 and dep:
            for x, other in ((0, 1), (1, 0)):
                if infos[x].dep and not infos[other].dep and infos[other].zero:
                    return self.rectify(eqn, ins[x], infos[x], scope)
        if dep and (name in ACTIVATIONS or name in ("max", "min", "clamp")
                    or (name == "select_n" and infos[0].dep)):
            self.obstacles.append(self.obstacle(name, scope))
        outs = self.bind(eqn, ins)
        out_infos = self.infos(eqn, infos, scope)
        outs = [self.keep(info, value, var) for value, info, var in zip(outs, out_infos, eqn.outvars)]
        return outs, out_infos

    # --- what a layer is ----------------------------------------------------------------
    def obstacle(self, what: str, scope) -> Obstacle:
        return Obstacle(what, tuple(scope), len(self.found) - 1 if self.found else None)

    def layer(self, kind, scope, param, info, eqn, geometry=None) -> Info:
        if self.quiet:
            return dataclasses.replace(info, layer=None, open=False)
        index = len(self.found)
        info = dataclasses.replace(info, layer=index, open=kind in ("conv", "dense", "pool", "avgpool"))
        self.found.append(Found(kind, scope, param, info, tuple(eqn.outvars[0].aval.shape), geometry or {}))
        return info

    def keep(self, info: Info, value, var):
        """Record ``value`` as the output of the layer ``info`` names (along a layer's
        bias and reshapes, the last one wins); returns the value to go on with, which at
        the layer's last step has ``at``'s delta added."""
        if info.layer is None or self.quiet:
            return value
        found = self.found[info.layer]
        found.info, found.shape = info, tuple(var.aval.shape)
        found.steps += 1
        if info.layer in self.at and found.steps == self.last_step[info.layer]:
            value = value + self.at[info.layer]
        if self.evaluate:
            self.values[info.layer] = value
        return value

    def rectify(self, eqn, x, info, scope):
        self.relus += 1
        out = self.relu(x) if self.evaluate else None
        out_info = self.layer("relu", scope, None, dataclasses.replace(info, param=None, zero=False), eqn)
        return [self.keep(out_info, out, eqn.outvars[0])], [out_info]

    def infos(self, eqn, infos, scope) -> list[Info]:
        """The outputs' infos of an ordinary equation, recognising layers on the way."""
        name, dep = eqn.primitive.name, any(i.dep for i in infos)
        outs = eqn.outvars
        if not dep:
            param = next((i.param for i in infos if i.param), None)
            zero = name in SHAPE_OPS + ("broadcast_in_dim",) and all(i.zero for i in infos)
            return [Info(param=param, zero=zero) for _ in outs]
        if len(outs) != 1:
            return [Info(dep=True) for _ in outs]
        shape = tuple(outs[0].aval.shape)
        deps = [i for i in infos if i.dep]
        src = deps[0]
        # a bias (or an average pool's divisor) joins the layer whose output it meets
        if src.open and len(deps) == 1:
            kind = self.found[src.layer].kind if src.layer is not None and not self.quiet else None
            flatten = name == "reshape" and len(eqn.invars[0].aval.shape) >= 3 and len(shape) == 2
            joins = (name in SHAPE_OPS and not flatten or
                     kind in ("conv", "dense") and name in ("add", "sub") or
                     kind == "avgpool" and name in ("div", "mul"))
            if joins:
                info = dataclasses.replace(self.geometry(eqn, infos, src, shape), layer=src.layer,
                                           open=name in SHAPE_OPS)
                return [info]
        if name == "conv_general_dilated" and infos[0].dep:
            rhs = eqn.invars[1].aval.shape
            dn = eqn.params["dimension_numbers"]
            lhs_spec, rhs_spec, out_spec = dn.lhs_spec, dn.rhs_spec, dn.out_spec
            kernel = tuple(rhs[d] for d in rhs_spec[2:])
            geometry = dict(kernel=kernel, stride=tuple(eqn.params["window_strides"]),
                            padding=tuple(tuple(p) for p in eqn.params["padding"]),
                            dilation=tuple(eqn.params["rhs_dilation"]), groups=eqn.params["feature_group_count"],
                            features=shape[out_spec[1]])
            field = None
            if (infos[0].field is not None and infos[0].axis("h") == lhs_spec[2] and infos[0].axis("w") == lhs_spec[3]
                    and all(d == 1 for d in eqn.params["lhs_dilation"]) and len(kernel) == 2):
                field = _window_field(infos[0].field, kernel, geometry["stride"],
                                      [p[0] for p in geometry["padding"]], geometry["dilation"])
            axes = (("n", out_spec[0]), ("h", out_spec[2]), ("w", out_spec[3]), ("c", out_spec[1])) \
                if len(out_spec) == 4 else ()
            return [self.layer("conv", scope, infos[1].param, Info(dep=True, axes=axes, field=field), eqn, geometry)]
        if name == "dot_general":
            if len(deps) != 1:  # a product of two activations (attention) is no dense layer
                return [Info(dep=True)]
            param = next((i.param for i in infos if not i.dep), None)
            return [self.layer("dense", scope, param, Info(dep=True, axes=_product_batch(eqn, infos)), eqn)]
        if name in ("reduce_window_max", "reduce_window_sum") and infos[0].dep:
            p = eqn.params
            kind = "pool" if name == "reduce_window_max" else "avgpool"
            h, w = src.axis("h"), src.axis("w")
            field, geometry = None, {}
            if h is not None and w is not None:
                geometry = dict(kernel=(p["window_dimensions"][h], p["window_dimensions"][w]),
                                stride=(p["window_strides"][h], p["window_strides"][w]),
                                padding=(tuple(p["padding"][h]), tuple(p["padding"][w])))
                plain = all(d == 1 for d in (*p["base_dilation"], *p["window_dilation"]))
                if src.field is not None and plain:
                    field = _window_field(src.field, geometry["kernel"], geometry["stride"],
                                          [geometry["padding"][0][0], geometry["padding"][1][0]], (1, 1))
            info = Info(dep=True, axes=src.axes, field=field)
            return [self.layer(kind, scope, None, info, eqn, geometry)]
        if name == "reshape" and len(eqn.invars[0].aval.shape) >= 3 and len(shape) == 2:
            return [self.layer("flatten", scope, None, Info(dep=True), eqn)]
        # a residual sum adds two layers' outputs (not, say, GELU's x + 0.044715 x^3)
        if (name == "add" and len(deps) == 2 and all(i.layer is not None for i in infos)
                and all(tuple(v.aval.shape) == shape for v in eqn.invars)):
            info = self.geometry(eqn, infos, src, shape)
            return [self.layer("add", scope, None, dataclasses.replace(info, layer=None, open=False), eqn)]
        return [dataclasses.replace(self.geometry(eqn, infos, src, shape), layer=None, open=False)]

    def geometry(self, eqn, infos, src: Info, shape) -> Info:
        """Layout and receptive field of an equation's output that is no new layer."""
        name = eqn.primitive.name
        deps = [i for i in infos if i.dep]
        if name in ELEMENTWISE:
            if all(i.axes == src.axes for i in deps) and all(
                    tuple(v.aval.shape) == shape for v, i in zip(eqn.invars, infos) if i.dep):
                field = _union([i.field for i in deps]) if len(deps) > 1 else src.field
                return Info(dep=True, axes=src.axes, field=field)
            return Info(dep=True)
        if name == "transpose":
            perm = list(eqn.params["permutation"])
            return Info(dep=True, axes=tuple((r, perm.index(a)) for r, a in src.axes), field=src.field)
        if name == "broadcast_in_dim" and math.prod(shape) == math.prod(eqn.invars[0].aval.shape):
            dims = eqn.params["broadcast_dimensions"]  # only unit axes inserted (expand_dims)
            return Info(dep=True, axes=tuple((r, dims[a]) for r, a in src.axes), field=src.field)
        if name in ("reshape", "squeeze", "expand_dims"):
            axes = _reshape_axes(tuple(eqn.invars[0].aval.shape), shape, src.axes)
            roles = dict(axes)
            return Info(dep=True, axes=axes, field=src.field if "h" in roles and "w" in roles else None)
        if name == "pad" and len(deps) == 1 and infos[0].dep and src.field is not None:
            config = eqn.params["padding_config"]
            h, w = src.axis("h"), src.axis("w")
            if h is None or w is None or any(c[2] for c in config) or any(
                    c != (0, 0, 0) for i, c in enumerate(config) if i not in (h, w, src.axis("c"))):
                return Info(dep=True)
            start = tuple(src.field.start[a] - config[ax][0] * src.field.jump[a] for a, ax in enumerate((h, w)))
            return Info(dep=True, axes=src.axes, field=ReceptiveField(src.field.size, src.field.jump, start))
        return Info(dep=True)

    # --- bodies -------------------------------------------------------------------------
    def survey(self, closed, infos) -> tuple[int, list[Obstacle]]:
        """ReLUs and obstacles in a body, without values and without recording layers."""
        inner = Walk(None, [])
        inner.quiet = 1
        inner.jaxpr(closed.jaxpr, closed.consts, [None] * len(closed.jaxpr.invars),
                    list(infos) + [Info(dep=True)] * (len(closed.jaxpr.invars) - len(infos)), ())
        return inner.relus, inner.obstacles

    def inherit(self, obstacles: list[Obstacle], scope) -> None:
        """A body's obstacles, placed where the body is called."""
        self.obstacles += [self.obstacle(o.what, tuple(scope) + o.scope) for o in obstacles]

    def opaque(self, eqn, ins, infos, scope, body):
        """A call the walk does not enter: bound as it is; its ReLUs and obstacles counted."""
        bodies = [body] if body is not None else list(jcore.jaxprs_in_params(eqn.params))
        dep = any(i.dep for i in infos)
        for b in bodies:
            closed = b if hasattr(b, "consts") else jcore.ClosedJaxpr(b, ())
            relus, obstacles = self.survey(closed, [Info(dep=dep)] * len(closed.jaxpr.invars))
            if dep and body is None and relus and eqn.primitive.name != "while":
                self.obstacles.append(self.obstacle(f"a ReLU inside {eqn.primitive.name}, which the rewriter "
                                                    "does not enter", scope))
            self.relus += relus if dep else 0
            if dep and eqn.primitive.name != "while":
                self.inherit(obstacles, scope)
        outs = self.bind(eqn, ins)
        return outs, [Info(dep=dep) for _ in eqn.outvars]

    def remat(self, eqn, ins, infos, scope):
        """``jax.checkpoint``: the body walked inside a new checkpoint with the same policy;
        layers recorded inside leave it as extra outputs."""
        jaxpr = eqn.params["jaxpr"]
        if not self.evaluate:
            return self.jaxpr(jaxpr, (), ins, infos, scope)
        found = {}

        def body(*args):
            outer, self.values = self.values, {}
            outs, found["infos"] = self.jaxpr(jaxpr, (), list(args), infos, scope)
            kept, self.values = self.values, outer
            return outs, kept

        outs, kept = jax.checkpoint(body, prevent_cse=eqn.params["prevent_cse"], policy=eqn.params["policy"])(*ins)
        self.values.update(kept)
        return list(outs), found["infos"]

    def quiet_body(self, closed, infos):
        """A body function for lax.scan/lax.switch: walked with values, no layers recorded."""
        def body(*args):
            self.quiet += 1
            try:
                outs, _ = self.jaxpr(closed.jaxpr, closed.consts, list(args), infos, ())
            finally:
                self.quiet -= 1
            return outs

        return body

    def scan(self, eqn, ins, infos, scope):
        p = eqn.params
        nc, ncarry = p["num_consts"], p["num_carry"]
        body_infos = list(infos[:nc]) + [Info(dep=True)] * (len(ins) - nc)
        dep = any(i.dep for i in infos)
        relus, obstacles = self.survey(p["jaxpr"], body_infos)
        self.relus += relus if dep else 0
        if dep:
            self.inherit(obstacles, scope)
        if not self.evaluate:
            return [None] * len(eqn.outvars), [Info(dep=dep) for _ in eqn.outvars]
        step = self.quiet_body(p["jaxpr"], body_infos)
        consts = ins[:nc]

        def f(carry, x):
            outs = step(*consts, *carry, *x)
            return outs[:ncarry], outs[ncarry:]

        carry, ys = lax.scan(f, ins[nc:nc + ncarry], ins[nc + ncarry:], length=p["length"], reverse=p["reverse"],
                             unroll=p["unroll"])
        return [*carry, *ys], [Info(dep=dep) for _ in eqn.outvars]

    def cond(self, eqn, ins, infos, scope):
        branches = eqn.params["branches"]
        dep = any(i.dep for i in infos)
        body_infos = [Info(dep=True)] * (len(ins) - 1)
        for b in branches:
            relus, obstacles = self.survey(b, body_infos)
            self.relus += relus if dep else 0
            if dep:
                self.inherit(obstacles, scope)
        if not self.evaluate:
            return [None] * len(eqn.outvars), [Info(dep=dep) for _ in eqn.outvars]
        outs = lax.switch(ins[0], [self.quiet_body(b, body_infos) for b in branches], *ins[1:])
        return list(outs), [Info(dep=dep) for _ in eqn.outvars]
