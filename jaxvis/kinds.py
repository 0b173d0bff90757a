"""Layer kinds: one frozen class per kind, owning everything jaxvis knows about it.

A network is data: a tuple of layers (:mod:`jaxvis.models`). Each layer is an instance
of its kind's class, and the class holds, in one place, what every part of jaxvis asks
of it:

- ``output_shape(*input_shapes)`` and ``param_shapes(input_shape)`` (with
  ``initial`` values for what is not drawn at random: biases, batch-norm statistics);
- ``forward(params, xs, run)``, the forward op (Zeiler & Fergus Sec. 2);
- ``field(*input_fields)``, the receptive-field step;
- ``reach(out_hw, start, size, tau)``, where a changed input region lands in the
  output (Krypton's propagation), and for sliding windows ``window(...)``, the op on a
  recomputed window;
- ``invert(params, signal, below, trace)``, the deconvnet's step down (Sec. 2.1);
- ``torch(input_shape)`` and ``torch_tensors(...)``, its PyTorch twin in torchvision's
  parameter names and layouts.

``apply``, incremental occlusion, the explicit deconvnet and the torch twin iterate
over layers and call these methods; a new kind is one new class here (plus its factory
in :mod:`jaxvis.models`). Kinds are frozen dataclasses, hashable, so a model stays a
static argument of ``jit``. ``Layer("conv", "c1", features=8)`` builds the kind named
``"conv"``, so layer descriptions written as data keep working.

A layer takes its inputs from the layer before it in the tuple, unless ``inputs`` names
them (an addition names two): a residual network is still a tuple.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Any, ClassVar

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from jaxvis import _checks, layers as L

INPUT = "input"  # the name a layer's ``inputs`` give the network's input
Shape = tuple[int, ...]


def pair(v) -> tuple[int, int]:
    return (v, v) if isinstance(v, int) else tuple(v)


def padding(p) -> L.Padding:
    if isinstance(p, int):
        return ((p, p), (p, p))
    p = tuple(p)
    if all(isinstance(v, int) for v in p):
        return ((p[0], p[0]), (p[1], p[1]))
    return tuple(tuple(v) for v in p)


@dataclasses.dataclass(frozen=True)
class ReceptiveField:
    """Where a layer's units look in the input, per axis (rows, columns).

    Unit ``(i, j)`` sees input rows ``start[0] + i * jump[0]`` up to (excluding)
    ``start[0] + i * jump[0] + size[0]``, likewise for columns. ``start`` can be
    negative: the field then reaches into the padding.
    """

    size: tuple[int, int]
    jump: tuple[int, int]
    start: tuple[int, int]

    def window(self, row, col):
        """``(top, left, height, width)`` of unit ``(row, col)``'s field in the input."""
        return (self.start[0] + row * self.jump[0], self.start[1] + col * self.jump[1],
                self.size[0], self.size[1])


@dataclasses.dataclass
class Run:
    """What a forward pass shares with every layer: the ReLU (its backward rule), the
    mode, the dropout key, and where layers record switches and batch-norm statistics."""

    relu: Callable
    train: bool = False
    rng: jax.Array | None = None
    index: int = 0  # the layer's position in the tuple (each dropout layer's key)
    switches: dict = dataclasses.field(default_factory=dict)
    state: dict = dataclasses.field(default_factory=dict)


KINDS: dict[str, type[Layer]] = {}


class _ByKind(type):
    """``Layer(kind, name, **settings)`` builds the class registered as ``kind``."""

    def __call__(cls, *args, **kwargs):
        if cls is not Layer:
            return super().__call__(*args, **kwargs)
        kind, *rest = args if args else (kwargs.pop("kind"),)
        name = rest[0] if rest else kwargs.get("name")
        _checks.choice(f"layer kind (layer {name!r})", kind, KINDS)
        return KINDS[kind](*rest, **kwargs)


def _tensor(suffix, shape, file_shape, to_jaxvis, to_file):
    return suffix, tuple(shape), tuple(file_shape), to_jaxvis, to_file


def _same(a):
    return a


@dataclasses.dataclass(frozen=True)
class Layer(metaclass=_ByKind):
    """One layer: its name, the layers it reads (default: the one before it) and, in
    each kind's fields, its geometry. Subclasses set ``kind`` and the behaviour."""

    name: str
    inputs: tuple[str, ...] = dataclasses.field(default=(), kw_only=True)

    kind: ClassVar[str] = ""
    windowed: ClassVar[bool] = False  # a sliding window with kernel, stride and padding (conv, max pool)
    convolution: ClassVar[bool] = False  # learns spatial filters
    rectifier: ClassVar[bool] = False  # a ReLU: its output is what the paper's figures show
    pooling: ClassVar[bool] = False  # a max pool with switches
    initial: ClassVar[dict[str, float]] = {}  # constant initial values of params not drawn at random
    statistics: ClassVar[tuple[str, ...]] = ()  # params that are state (running statistics), not trained

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if cls.kind:
            KINDS[cls.kind] = cls

    def __post_init__(self):
        _checks.annotated_fields(self)
        if isinstance(self.inputs, str) or not isinstance(self.inputs, (tuple, list)) \
                or not all(isinstance(n, str) for n in self.inputs):
            raise ValueError(f"layer {self.name!r}: inputs must be a tuple of layer names, got {self.inputs!r}")
        object.__setattr__(self, "inputs", tuple(self.inputs))

    def check(self) -> None:
        """Raise a ValueError for a setting out of range (types are checked on creation)."""

    @property
    def has_params(self) -> bool:
        return bool(self.param_shapes((1, 1, 1)))

    # --- shapes and parameters ---------------------------------------------------------
    def output_shape(self, *shapes: Shape) -> Shape:
        return shapes[0]

    def param_shapes(self, shape: Shape) -> dict[str, Shape]:
        """``{leaf: shape}`` of the params this layer takes for an input of ``shape``."""
        return {}

    def param_note(self, leaf: str) -> str:
        """What a missing param is, for error messages."""
        return ""

    def conv_depth(self, in_channels: int) -> int:
        """Length of the dot product behind each output value of a convolution (0 otherwise)."""
        return 0

    # --- forward -----------------------------------------------------------------------
    def forward(self, params, xs: tuple, run: Run):
        """The output for the inputs ``xs`` (batches), with this layer's ``params``."""
        raise NotImplementedError(f"{type(self).__name__} must define forward")

    # --- geometry ----------------------------------------------------------------------
    def field(self, *fields: ReceptiveField | None) -> ReceptiveField | None:
        """The receptive field of this layer's units, given its inputs' (None: none)."""
        return None

    def reach(self, out_hw, start, size, tau=None):
        """``(start, size)`` of the output window an input region changes (pointwise:
        the same region)."""
        return tuple(start), tuple(size)

    # --- deconvnet ---------------------------------------------------------------------
    def invert(self, params, signal, below: tuple, trace) -> tuple:
        """The signal on this layer's output passed down to each of its inputs."""
        return (signal,)

    # --- PyTorch -----------------------------------------------------------------------
    def torch(self, shape: Shape):
        """The ``torch.nn`` module computing this layer, for an input of ``shape``."""
        raise NotImplementedError(f"{type(self).__name__} must define torch")

    def torch_tensors(self, shape: Shape, flat_from: Shape | None) -> dict[str, tuple]:
        """``{leaf: (torch suffix, shape, file shape, to_jaxvis, to_file)}``; ``flat_from``
        is the ``(H, W, C)`` a flat input was flattened from (PyTorch flattens C, H, W)."""
        return {}

    torch_buffers: ClassVar[dict[str, Any]] = {}  # file-only entries: ignored on import, written on export

    def flattened(self, shape: Shape, flat_from: Shape | None) -> Shape | None:
        """The ``(H, W, C)`` this layer's flat output was flattened from, if any."""
        return flat_from if self.output_shape(shape) == shape else None


# ---------------------------------------------------------------------------------------
# Sliding windows


@dataclasses.dataclass(frozen=True)
class _Window(Layer):
    """Geometry shared by convolution and max pooling."""

    windowed: ClassVar[bool] = True
    pad_value: ClassVar[float] = 0.0  # what an occlusion canvas holds beyond the map
    window_extra: ClassVar[int] = 0  # columns the occlusion window reads beyond its need

    @property
    def effective_kernel(self) -> tuple[int, int]:
        """Kernel extent once dilated: ``(k - 1) * d + 1`` (Yu & Koltun)."""
        return tuple((k - 1) * d + 1 for k, d in zip(self.kernel, self.dilation))

    def check(self) -> None:
        for what in ("dilation", "stride", "kernel"):
            L.as_pair(f"layer {self.name!r}: {what}", getattr(self, what))
        L.as_padding(f"layer {self.name!r}: padding", self.padding)

    def _spatial(self, shape: Shape) -> None:
        if len(shape) != 3:
            raise ValueError(f"layer {self.name!r} ({self.kind}) needs spatial maps, "
                             f"but its input has shape {shape}; put it before the flatten")
        for a in range(2):
            padded, k = shape[a] + sum(self.padding[a]), self.effective_kernel[a]
            if k > padded:
                raise ValueError(
                    f"layer {self.name!r}: effective kernel {k} (kernel {self.kernel[a]}, dilation "
                    f"{self.dilation[a]}) is larger than its padded input {padded} "
                    f"(map {shape[a]} + padding {self.padding[a]})")

    def field(self, *fields):
        f = fields[0]
        if f is None:
            return None
        k = self.effective_kernel
        return ReceptiveField(tuple(f.size[a] + (k[a] - 1) * f.jump[a] for a in range(2)),
                              tuple(f.jump[a] * self.stride[a] for a in range(2)),
                              tuple(f.start[a] - self.padding[a][0] * f.jump[a] for a in range(2)))

    def reach(self, out_hw, start, size, tau=None):
        """Per axis, with effective kernel ``K``, stride ``S`` and leading padding ``P``,
        an input region starting at ``x`` of width ``w`` changes the outputs from
        ``ceil((P + x - K + 1) / S)``, at most ``min(ceil((w + K - 1) / S), W_out)`` of
        them whatever the alignment: that bound is the window's fixed width. The start is
        clamped so the window stays inside the map. ``tau`` caps the width at
        ``round(tau * W_out)`` (halves up), keeping the centre."""
        starts, sizes = [], []
        for a in range(2):
            k, s, p = self.effective_kernel[a], self.stride[a], self.padding[a][0]
            exact = min(-(-(size[a] + k - 1) // s), out_hw[a])
            width = exact if tau is None else min(exact, max(1, math.floor(tau * out_hw[a] + 0.5)))
            first = -((k - 1 - p - start[a]) // s) + (exact - width) // 2
            starts.append(jnp.clip(first, 0, out_hw[a] - width))
            sizes.append(width)
        return tuple(starts), tuple(sizes)


@dataclasses.dataclass(frozen=True)
class Conv(_Window):
    """2-D convolution (cross-correlation), HWIO kernel, optional bias."""

    features: int = 0
    kernel: tuple[int, int] = (1, 1)
    stride: tuple[int, int] = (1, 1)
    padding: L.Padding = ((0, 0), (0, 0))
    dilation: tuple[int, int] = (1, 1)
    groups: int = 1
    bias: bool = True

    kind: ClassVar[str] = "conv"
    convolution: ClassVar[bool] = True
    window_extra: ClassVar[int] = 1
    initial: ClassVar[dict[str, float]] = {"bias": 0.0}

    def check(self) -> None:
        if self.features < 1:
            raise ValueError(f"layer {self.name!r} needs features >= 1, got {self.features}")
        super().check()
        if self.groups < 1:
            raise ValueError(f"layer {self.name!r}: groups must be >= 1, got {self.groups}")

    def output_shape(self, *shapes):
        shape = shapes[0]
        self._spatial(shape)
        if shape[2] % self.groups or self.features % self.groups:
            raise ValueError(f"layer {self.name!r}: {shape[2]} input and {self.features} output "
                             f"channels must both divide by groups={self.groups}")
        return (*((shape[a] + sum(self.padding[a]) - self.effective_kernel[a]) // self.stride[a] + 1
                  for a in range(2)), self.features)

    def param_shapes(self, shape):
        kernel = {"kernel": (*self.kernel, shape[-1] // self.groups, self.features)}
        return {**kernel, "bias": (self.features,)} if self.bias else kernel

    def conv_depth(self, in_channels):
        return self.kernel[0] * self.kernel[1] * in_channels // self.groups

    def forward(self, params, xs, run):
        return L.conv2d(xs[0], params["kernel"], params.get("bias"), self.stride, self.padding, self.dilation,
                        self.groups)

    def fits_winograd(self) -> bool:
        """A 3x3 stride-1 undilated ungrouped convolution: Winograd's F(2x2, 3x3) applies."""
        return self.kernel == (3, 3) and self.stride == (1, 1) and self.dilation == (1, 1) and self.groups == 1

    def window(self, params, region_1HWC, extra: int):
        """The output window from the input region it reads (no padding: the region holds it).

        The extra column read and cut again by padding -1 leaves the arithmetic of an
        unpadded convolution, but XLA:CPU runs padded convolutions about twice as fast
        as unpadded ones on windows this small."""
        return L.conv2d(region_1HWC, params["kernel"], params.get("bias"), self.stride, ((0, 0), (0, -extra)),
                        self.dilation, self.groups)[0]

    def invert(self, params, signal, below, trace):
        return (L.deconv(signal, params["kernel"], below[0].shape[1:3], self.stride, self.padding, self.dilation,
                         self.groups),)

    def torch(self, shape):
        from torch import nn
        return nn.Conv2d(shape[-1], self.features, self.kernel, self.stride, _symmetric(self), self.dilation,
                         self.groups, bias=self.bias)

    def torch_tensors(self, shape, flat_from):
        (kh, kw, cin, cout), tensors = self.param_shapes(shape)["kernel"], {}
        tensors["kernel"] = _tensor("weight", (kh, kw, cin, cout), (cout, cin, kh, kw),
                                    lambda w: w.transpose(2, 3, 1, 0), lambda k: k.transpose(3, 2, 0, 1))
        if self.bias:
            tensors["bias"] = _tensor("bias", (cout,), (cout,), _same, _same)
        return tensors


def _symmetric(layer) -> tuple[int, int]:
    if any(lo != hi for lo, hi in layer.padding):
        raise ValueError(f"layer {layer.name!r}: PyTorch takes symmetric padding only, got {layer.padding}")
    return tuple(lo for lo, _ in layer.padding)


@dataclasses.dataclass(frozen=True)
class MaxPool(_Window):
    """Max pooling that records its switches (the argmax of each window)."""

    kernel: tuple[int, int] = (2, 2)
    stride: tuple[int, int] = (2, 2)
    padding: L.Padding = ((0, 0), (0, 0))
    ceil_mode: bool = False

    kind: ClassVar[str] = "max_pool"
    pooling: ClassVar[bool] = True
    pad_value: ClassVar[float] = -math.inf

    @property
    def dilation(self) -> tuple[int, int]:
        return (1, 1)

    def output_shape(self, *shapes):
        shape = shapes[0]
        self._spatial(shape)
        return (*(L.pool_output_size(shape[a], self.kernel[a], self.stride[a], self.padding[a], self.ceil_mode)
                  for a in range(2)), shape[2])

    def forward(self, params, xs, run):
        y, run.switches[self.name] = L.max_pool(xs[0], self.kernel, self.stride, self.padding, self.ceil_mode)
        return y

    def window(self, params, region_1HWC, extra: int):
        """The output window's values (switches would cost an argmax per window)."""
        return lax.reduce_window(region_1HWC, -jnp.inf, lax.max, (1, *self.kernel, 1), (1, *self.stride, 1),
                                 "VALID")[0]

    def invert(self, params, signal, below, trace):
        return (L.unpool(signal, trace.switches[self.name], below[0].shape[1:3], self.kernel, self.stride,
                         self.padding, self.ceil_mode),)

    def torch(self, shape):
        from torch import nn
        return nn.MaxPool2d(self.kernel, self.stride, _symmetric(self), ceil_mode=self.ceil_mode)


# ---------------------------------------------------------------------------------------
# Pointwise kinds: an occluder's change stays where it is, fields pass through


@dataclasses.dataclass(frozen=True)
class _Pointwise(Layer):
    def field(self, *fields):
        return fields[0]


@dataclasses.dataclass(frozen=True)
class ReLU(_Pointwise):
    kind: ClassVar[str] = "relu"
    rectifier: ClassVar[bool] = True

    def forward(self, params, xs, run):
        return run.relu(xs[0])

    def invert(self, params, signal, below, trace):
        return (L.unrelu(signal),)

    def torch(self, shape):
        from torch import nn
        return nn.ReLU()


@dataclasses.dataclass(frozen=True)
class LRN(_Pointwise):
    """Local response normalization across maps; ``lrn`` is ``(size, alpha, beta, k)``."""

    lrn: tuple[int, float, float, float] = (5, 1e-4, 0.75, 2.0)

    kind: ClassVar[str] = "lrn"

    def forward(self, params, xs, run):
        return L.local_response_norm(xs[0], *self.lrn)

    def invert(self, params, signal, below, trace):
        """The paper does not say; here the normalization's VJP at the forward input."""
        _, norm_vjp = jax.vjp(lambda v: L.local_response_norm(v, *self.lrn), below[0])
        return norm_vjp(signal)

    def torch(self, shape):
        from torch import nn
        return nn.LocalResponseNorm(*self.lrn)


@dataclasses.dataclass(frozen=True)
class Dropout(_Pointwise):
    """Inverted dropout: the identity at analysis time."""

    rate: float = 0.5

    kind: ClassVar[str] = "dropout"

    def check(self) -> None:
        if not 0 <= self.rate < 1:
            raise ValueError(f"layer {self.name!r}: dropout rate must be in [0, 1), got {self.rate}")

    def forward(self, params, xs, run):
        return L.dropout(xs[0], self.rate, None if run.rng is None else jax.random.fold_in(run.rng, run.index),
                         run.train)

    def torch(self, shape):
        from torch import nn
        return nn.Dropout(self.rate)


def _channels(v_C, like):
    """A per-channel vector shaped to broadcast over the last axis of ``like``."""
    return v_C.reshape((1,) * (like.ndim - 1) + (-1,))


@dataclasses.dataclass(frozen=True)
class BatchNorm(_Pointwise):
    """Batch normalization (Ioffe & Szegedy) over the last axis, as PyTorch's ``BatchNorm2d``.

    Params ``scale``, ``bias`` and the running statistics ``mean`` and ``var``. At
    inference the running statistics normalize; in training the batch's (biased
    variance), and the pass records ``(1 - momentum) * running + momentum * batch``
    (unbiased variance, as PyTorch) in ``trace.state``, which training writes back.
    """

    eps: float = 1e-5
    momentum: float = 0.1

    kind: ClassVar[str] = "batch_norm"
    initial: ClassVar[dict[str, float]] = {"scale": 1.0, "bias": 0.0, "mean": 0.0, "var": 1.0}
    statistics: ClassVar[tuple[str, ...]] = ("mean", "var")

    def check(self) -> None:
        if not self.eps > 0 or not 0 <= self.momentum <= 1:
            raise ValueError(f"layer {self.name!r}: batch norm needs eps > 0 and momentum in [0, 1], got "
                             f"eps={self.eps}, momentum={self.momentum}")

    def param_shapes(self, shape):
        return {leaf: (shape[-1],) for leaf in ("scale", "bias", "mean", "var")}

    def param_note(self, leaf):
        return (f" (batch norm {self.name!r} normalizes with its running statistics at inference)"
                if leaf in self.statistics else "")

    def forward(self, params, xs, run):
        x = xs[0]
        if run.train:
            axes = tuple(range(x.ndim - 1))
            mean, var = jnp.mean(x, axes), jnp.var(x, axes)
            n = x.size // x.shape[-1]
            m = self.momentum
            run.state[self.name] = {
                "mean": (1 - m) * params["mean"] + m * lax.stop_gradient(mean),
                "var": (1 - m) * params["var"] + m * lax.stop_gradient(var) * (n / max(n - 1, 1))}
        else:
            mean, var = params["mean"], params["var"]
        scale = params["scale"] * lax.rsqrt(var + self.eps)
        return (x - _channels(mean, x)) * _channels(scale, x) + _channels(params["bias"], x)

    def invert(self, params, signal, below, trace):
        """The inference-time map is affine per channel: its transpose scales the signal."""
        return (signal * _channels(params["scale"] * lax.rsqrt(params["var"] + self.eps), signal),)

    def torch(self, shape):
        from torch import nn
        return nn.BatchNorm2d(shape[-1], self.eps, self.momentum)

    def torch_tensors(self, shape, flat_from):
        c = (shape[-1],)
        return {leaf: _tensor(suffix, c, c, _same, _same) for leaf, suffix in
                (("scale", "weight"), ("bias", "bias"), ("mean", "running_mean"), ("var", "running_var"))}

    torch_buffers: ClassVar[dict[str, Any]] = {"num_batches_tracked": np.int64(0)}


# ---------------------------------------------------------------------------------------
# Merging branches


@dataclasses.dataclass(frozen=True)
class Add(Layer):
    """The sum of its inputs (a residual connection); they must have one shape."""

    kind: ClassVar[str] = "add"

    def check(self) -> None:
        if len(self.inputs) < 2:
            raise ValueError(f"addition {self.name!r} needs at least 2 inputs, got inputs={self.inputs!r}")

    def output_shape(self, *shapes):
        if len(set(shapes)) != 1:
            listed = ", ".join(f"{n!r} {s}" for n, s in zip(self.inputs, shapes))
            raise ValueError(f"addition {self.name!r} needs inputs of one shape, got {listed}")
        return shapes[0]

    def forward(self, params, xs, run):
        y = xs[0]
        for x in xs[1:]:
            y = y + x
        return y

    def field(self, *fields):
        """The union of the inputs' fields; None where their jumps differ (no single
        field of the form ``start + i * jump`` holds every input's)."""
        if any(f is None for f in fields) or len({f.jump for f in fields}) != 1:
            return None
        start = tuple(min(f.start[a] for f in fields) for a in range(2))
        end = tuple(max(f.start[a] + f.size[a] for f in fields) for a in range(2))
        return ReceptiveField(tuple(end[a] - start[a] for a in range(2)), fields[0].jump, start)

    def invert(self, params, signal, below, trace):
        """The signal goes down every branch whole (as the sum's VJP sends it)."""
        return (signal,) * len(below)

    def torch(self, shape):
        from torch import nn

        class Sum(nn.Module):
            def forward(self, *xs):
                return sum(xs[1:], xs[0])

        return Sum()


# ---------------------------------------------------------------------------------------
# Averaging, flattening, dense


def _maps(layer: Layer, shape: Shape) -> None:
    if len(shape) != 3:
        raise ValueError(f"layer {layer.name!r} ({layer.kind}) needs spatial maps, "
                         f"but its input has shape {shape}; put it before the flatten")


@dataclasses.dataclass(frozen=True)
class AdaptiveAvgPool(Layer):
    """PyTorch's ``AdaptiveAvgPool2d``: maps of any size averaged to ``output_size``.
    Not a sliding window: receptive fields stop before it."""

    output_size: tuple[int, int] = (1, 1)

    kind: ClassVar[str] = "adaptive_avg_pool"

    def check(self) -> None:
        L.as_pair(f"layer {self.name!r}: output_size", self.output_size)

    def output_shape(self, *shapes):
        _maps(self, shapes[0])
        return (*self.output_size, shapes[0][2])

    def forward(self, params, xs, run):
        return L.adaptive_avg_pool(xs[0], self.output_size)

    def invert(self, params, signal, below, trace):
        return (L.adaptive_avg_unpool(signal, below[0].shape[1:3]),)

    def torch(self, shape):
        from torch import nn
        return nn.AdaptiveAvgPool2d(self.output_size)


@dataclasses.dataclass(frozen=True)
class GlobalAvgPool(Layer):
    """The mean of each map: ``(H, W, C)`` to ``(C,)`` (ResNet's ``avgpool`` and flatten)."""

    kind: ClassVar[str] = "global_avg_pool"

    def output_shape(self, *shapes):
        _maps(self, shapes[0])
        return (shapes[0][2],)

    def forward(self, params, xs, run):
        return jnp.mean(xs[0], axis=(1, 2))

    def invert(self, params, signal, below, trace):
        h, w = below[0].shape[1:3]
        return (jnp.broadcast_to(signal[:, None, None, :] / (h * w), below[0].shape),)

    def torch(self, shape):
        from torch import nn
        return nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(1))


@dataclasses.dataclass(frozen=True)
class Flatten(Layer):
    """All but the batch axis in one, in (row, column, channel) order."""

    kind: ClassVar[str] = "flatten"

    def output_shape(self, *shapes):
        return (math.prod(shapes[0]),)

    def forward(self, params, xs, run):
        return L.flatten(xs[0])

    def invert(self, params, signal, below, trace):
        return (signal.reshape(below[0].shape),)

    def torch(self, shape):
        from torch import nn
        return nn.Flatten(1)

    def flattened(self, shape, flat_from):
        return shape if len(shape) == 3 and shape[0] * shape[1] > 1 else None


@dataclasses.dataclass(frozen=True)
class Dense(Layer):
    features: int = 0

    kind: ClassVar[str] = "dense"
    initial: ClassVar[dict[str, float]] = {"bias": 0.0}

    def check(self) -> None:
        if self.features < 1:
            raise ValueError(f"layer {self.name!r} needs features >= 1, got {self.features}")

    def output_shape(self, *shapes):
        if len(shapes[0]) != 1:
            raise ValueError(f"dense layer {self.name!r} needs a flat input, got shape {shapes[0]}; "
                             "put a flatten layer before it")
        return (self.features,)

    def param_shapes(self, shape):
        return {"kernel": (shape[-1], self.features), "bias": (self.features,)}

    def forward(self, params, xs, run):
        return L.dense(xs[0], params["kernel"], params["bias"])

    def invert(self, params, signal, below, trace):
        return (signal @ params["kernel"].T,)

    def torch(self, shape):
        from torch import nn
        return nn.Linear(shape[-1], self.features)

    def torch_tensors(self, shape, flat_from):
        fin, fout = shape[-1], self.features
        if flat_from is not None:
            h, w, c = flat_from

            def to_jaxvis(t):  # torch column c*H*W + y*W + x  ->  jaxvis row y*W*C + x*C + c
                return t.reshape(fout, c, h, w).transpose(2, 3, 1, 0).reshape(h * w * c, fout)

            def to_file(k):
                return k.reshape(h, w, c, fout).transpose(3, 2, 0, 1).reshape(fout, c * h * w)
        else:
            to_jaxvis = to_file = np.transpose
        return {"kernel": _tensor("weight", (fin, fout), (fout, fin), to_jaxvis, to_file),
                "bias": _tensor("bias", (fout,), (fout,), _same, _same)}

    def flattened(self, shape, flat_from):
        return None
