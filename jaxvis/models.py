"""Architectures as data: layer tuples, the model zoo, and one generic Flax module.

A network is an ordered tuple of :class:`Layer` descriptions. Shapes, receptive fields,
weight import, the explicit deconvnet and incremental occlusion all read the same tuple,
so a new architecture, ablation or dilation setting is a new tuple, not new code.

``Model.apply(params, x, rule=...)`` is the only door into a network. It returns
``(logits, trace)``: ``trace.activations`` maps every layer name to its output and
``trace.switches`` maps every max-pool name to its switches (Zeiler & Fergus Sec. 2.1).

torchvision's AlexNet and VGG end their convolutional part with an adaptive average
pool (to 6x6 and 7x7), so they take any input size with the same parameters; so do
:func:`alexnet`, :func:`vgg16` and :func:`vgg19` here (``input_size=(h, w)`` or
:meth:`Model.with_input_size`). ZFNet and the MNIST network, as published, have none:
their first dense layer's size follows from the input size.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jaxvis import _checks, layers as L, rules

KINDS = ("conv", "relu", "max_pool", "lrn", "adaptive_avg_pool", "flatten", "dense", "dropout")
SPATIAL_KINDS = ("conv", "relu", "max_pool", "lrn")  # the sliding-window part: units have receptive fields
CHANNEL_ORDERS = ("RGB", "BGR")
Params = dict[str, Any]


def _pair(v) -> tuple[int, int]:
    return (v, v) if isinstance(v, int) else tuple(v)


def _padding(p) -> L.Padding:
    if isinstance(p, int):
        return ((p, p), (p, p))
    p = tuple(p)
    if all(isinstance(v, int) for v in p):
        return ((p[0], p[0]), (p[1], p[1]))
    return tuple(tuple(v) for v in p)


@dataclasses.dataclass(frozen=True)
class Layer:
    """One layer of a network: its kind, name and geometry.

    ``features`` is the output width of conv and dense layers. ``lrn`` holds
    ``(size, alpha, beta, k)`` of a local response normalization layer, ``output_size``
    the ``(height, width)`` an adaptive average pool gives.
    """

    kind: str
    name: str
    features: int = 0
    kernel: tuple[int, int] = (1, 1)
    stride: tuple[int, int] = (1, 1)
    padding: L.Padding = ((0, 0), (0, 0))
    dilation: tuple[int, int] = (1, 1)
    groups: int = 1
    ceil_mode: bool = False
    rate: float = 0.0
    lrn: tuple[int, float, float, float] = (5, 1e-4, 0.75, 2.0)
    output_size: tuple[int, int] = (1, 1)

    def __post_init__(self):
        _checks.annotated_fields(self)

    @property
    def has_params(self) -> bool:
        return self.kind in ("conv", "dense")

    @property
    def effective_kernel(self) -> tuple[int, int]:
        """Kernel extent once dilated: ``(k - 1) * d + 1`` (Yu & Koltun)."""
        return tuple((k - 1) * d + 1 for k, d in zip(self.kernel, self.dilation))


def conv(name: str, features: int, kernel=3, stride=1, padding=0, dilation=1, groups: int = 1) -> Layer:
    return Layer("conv", name, features=features, kernel=_pair(kernel), stride=_pair(stride),
                 padding=_padding(padding), dilation=_pair(dilation), groups=groups)


def relu(name: str) -> Layer:
    return Layer("relu", name)


def max_pool(name: str, kernel=2, stride=None, padding=0, ceil_mode: bool = False) -> Layer:
    return Layer("max_pool", name, kernel=_pair(kernel), stride=_pair(kernel if stride is None else stride),
                 padding=_padding(padding), ceil_mode=ceil_mode)


def lrn(name: str, size: int = 5, alpha: float = 1e-4, beta: float = 0.75, k: float = 2.0) -> Layer:
    return Layer("lrn", name, lrn=(size, alpha, beta, k))


def adaptive_avg_pool(name: str = "avgpool", output_size=7) -> Layer:
    """PyTorch's ``AdaptiveAvgPool2d``: maps of any size averaged to ``output_size``
    (see :func:`jaxvis.layers.adaptive_avg_pool`). Not a sliding window: receptive
    fields stop before it."""
    return Layer("adaptive_avg_pool", name, output_size=_pair(output_size))


def flatten(name: str = "flatten") -> Layer:
    return Layer("flatten", name)


def dense(name: str, features: int) -> Layer:
    return Layer("dense", name, features=features)


def dropout(name: str, rate: float = 0.5) -> Layer:
    return Layer("dropout", name, rate=rate)


# ---------------------------------------------------------------------------------------
# Geometry computed from the tuple


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


def _check_layers(layers: Sequence[Layer]) -> None:
    for layer in layers:
        if not isinstance(layer, Layer):
            raise ValueError(f"layers must be Layer descriptions (jaxvis.models.conv, relu, ...), "
                             f"got {type(layer).__name__} {layer!r}")
    names = [layer.name for layer in layers]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise ValueError(f"layer names must be unique, got duplicates {dup}")
    for layer in layers:
        _checks.choice(f"layer kind (layer {layer.name!r})", layer.kind, KINDS)
        if layer.has_params and layer.features < 1:
            raise ValueError(f"layer {layer.name!r} needs features >= 1, got {layer.features}")
        for field in ("dilation", "stride", "kernel", "output_size"):
            L.as_pair(f"layer {layer.name!r}: {field}", getattr(layer, field))
        L.as_padding(f"layer {layer.name!r}: padding", layer.padding)
        if layer.groups < 1:
            raise ValueError(f"layer {layer.name!r}: groups must be >= 1, got {layer.groups}")
        if layer.kind == "dropout" and not 0 <= layer.rate < 1:
            raise ValueError(f"layer {layer.name!r}: dropout rate must be in [0, 1), got {layer.rate}")


def layer_shapes(layers: Sequence[Layer], input_shape: tuple[int, int, int]) -> dict[str, tuple[int, ...]]:
    """Each layer's output shape (without the batch axis), checking that every layer fits."""
    shape = tuple(input_shape)
    shapes = {}
    for layer in layers:
        if layer.kind in ("conv", "max_pool"):
            if len(shape) != 3:
                raise ValueError(f"layer {layer.name!r} ({layer.kind}) needs spatial maps, "
                                 f"but its input has shape {shape}; put it before the flatten")
            hw = []
            for a in range(2):
                padded = shape[a] + sum(layer.padding[a])
                k = layer.effective_kernel[a]
                if k > padded:
                    raise ValueError(
                        f"layer {layer.name!r}: effective kernel {k} (kernel {layer.kernel[a]}, dilation "
                        f"{layer.dilation[a]}) is larger than its padded input {padded} "
                        f"(map {shape[a]} + padding {layer.padding[a]})")
                if layer.kind == "conv":
                    hw.append((padded - k) // layer.stride[a] + 1)
                else:
                    hw.append(L.pool_output_size(shape[a], k, layer.stride[a], layer.padding[a], layer.ceil_mode))
            if layer.kind == "conv":
                if shape[2] % layer.groups or layer.features % layer.groups:
                    raise ValueError(f"layer {layer.name!r}: {shape[2]} input and {layer.features} output "
                                     f"channels must both divide by groups={layer.groups}")
                shape = (hw[0], hw[1], layer.features)
            else:
                shape = (hw[0], hw[1], shape[2])
        elif layer.kind == "adaptive_avg_pool":
            if len(shape) != 3:
                raise ValueError(f"layer {layer.name!r} (adaptive_avg_pool) needs spatial maps, "
                                 f"but its input has shape {shape}; put it before the flatten")
            shape = (*layer.output_size, shape[2])
        elif layer.kind == "flatten":
            shape = (math.prod(shape),)
        elif layer.kind == "dense":
            if len(shape) != 1:
                raise ValueError(f"dense layer {layer.name!r} needs a flat input, got shape {shape}; "
                                 "put a flatten layer before it")
            shape = (layer.features,)
        shapes[layer.name] = shape
    return shapes


def receptive_fields(layers: Sequence[Layer]) -> dict[str, ReceptiveField]:
    """Receptive field of every layer of the sliding-window part (up to the first layer
    that is not conv, relu, max_pool or lrn: an adaptive pool's bins depend on the input
    size, a flatten's units see everything)."""
    size, jump, start = (1, 1), (1, 1), (0, 0)
    fields = {}
    for layer in layers:
        if layer.kind not in SPATIAL_KINDS:
            break
        if layer.kind in ("conv", "max_pool"):
            k = layer.effective_kernel
            size = tuple(size[a] + (k[a] - 1) * jump[a] for a in range(2))
            start = tuple(start[a] - layer.padding[a][0] * jump[a] for a in range(2))
            jump = tuple(jump[a] * layer.stride[a] for a in range(2))
        fields[layer.name] = ReceptiveField(size, jump, start)
    return fields


# ---------------------------------------------------------------------------------------
# The generic Flax module


@functools.partial(jax.tree_util.register_dataclass, data_fields=["activations", "switches"], meta_fields=[])
@dataclasses.dataclass(frozen=True)
class Trace:
    """What a forward pass saw: every layer's output and every max-pool's switches."""

    activations: dict[str, jax.Array]
    switches: dict[str, jax.Array]


class _Weights(nn.Module):
    """Declares one layer's kernel and bias; the arithmetic stays in :mod:`jaxvis.layers`."""

    kernel_shape: tuple[int, ...]

    @nn.compact
    def __call__(self):
        init = nn.initializers.variance_scaling(2.0, "fan_in", "truncated_normal")
        kernel = self.param("kernel", init, self.kernel_shape)
        bias = self.param("bias", nn.initializers.zeros, self.kernel_shape[-1:])
        return kernel, bias


def _kernel_shape(layer: Layer, fan_in: int) -> tuple[int, ...]:
    """The kernel of a conv (HWIO) or dense (in, out) layer whose input has ``fan_in`` channels."""
    if layer.kind == "conv":
        return (*layer.kernel, fan_in // layer.groups, layer.features)
    return (fan_in, layer.features)


class _Network(nn.Module):
    layers: tuple[Layer, ...]

    @nn.compact
    def __call__(self, x, relu_fn: Callable, train: bool, until: str | None, rng):
        activations, switches = {}, {}
        for i, layer in enumerate(self.layers):
            if layer.has_params:
                kernel, bias = _Weights(_kernel_shape(layer, x.shape[-1]), name=layer.name)()
            if layer.kind == "conv":
                x = L.conv2d(x, kernel, bias, layer.stride, layer.padding, layer.dilation, layer.groups)
            elif layer.kind == "dense":
                x = L.dense(x, kernel, bias)
            elif layer.kind == "relu":
                x = relu_fn(x)
            elif layer.kind == "max_pool":
                x, switches[layer.name] = L.max_pool(x, layer.kernel, layer.stride, layer.padding, layer.ceil_mode)
            elif layer.kind == "lrn":
                x = L.local_response_norm(x, *layer.lrn)
            elif layer.kind == "adaptive_avg_pool":
                x = L.adaptive_avg_pool(x, layer.output_size)
            elif layer.kind == "flatten":
                x = L.flatten(x)
            elif layer.kind == "dropout":
                x = L.dropout(x, layer.rate, None if rng is None else jax.random.fold_in(rng, i), train)
            activations[layer.name] = x
            if layer.name == until:
                break
        return x, Trace(activations, switches)


# ---------------------------------------------------------------------------------------
# Model


@dataclasses.dataclass(frozen=True)
class Model:
    """A network: its layer tuple, input shape and input normalization.

    Inputs to :meth:`apply` are NHWC float batches already normalized with
    :meth:`normalize`: RGB pixels in [0, 1], flipped to BGR when ``channel_order`` is
    "BGR", then ``(pixels - mean) / std``, with ``mean`` and ``std`` (one value, or one
    per channel) in the network's channel order.
    """

    name: str
    layers: tuple[Layer, ...]
    input_shape: tuple[int, int, int]
    mean: tuple[float, ...] = (0.0,)
    std: tuple[float, ...] = (1.0,)
    channel_order: str = "RGB"

    def __post_init__(self):
        if not isinstance(self.name, str):
            raise ValueError(f"a model's name must be a string, got {type(self.name).__name__} {self.name!r}")
        if not isinstance(self.layers, (tuple, list)):
            raise ValueError(f"layers must be a tuple of Layer descriptions, got {type(self.layers).__name__}")
        shape = self.input_shape
        if not isinstance(shape, (tuple, list)) or len(shape) != 3:
            raise ValueError(f"input_shape must be 3 integers >= 1 (height, width, channels), got {shape!r}")
        for what, v in zip(("height", "width", "channels"), shape):
            _checks.count(f"input_shape's {what}", v)
        _checks.choice("channel order", self.channel_order, CHANNEL_ORDERS)
        channels = shape[2]
        if self.channel_order == "BGR" and channels != 3:
            raise ValueError(f"channel_order 'BGR' needs 3 input channels, got input_shape {tuple(shape)}")
        for what in ("mean", "std"):
            values = getattr(self, what)
            ok = (isinstance(values, (tuple, list)) and len(values) in (1, channels)
                  and all(isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, (bool, np.bool_))
                          and math.isfinite(v) and (what == "mean" or v > 0) for v in values))
            if not ok:
                rule = "finite numbers" if what == "mean" else "finite numbers > 0"
                raise ValueError(f"{what} must be 1 or {channels} {rule} (one per input channel), got {values!r}")
            object.__setattr__(self, what, tuple(float(v) for v in values))  # hashable, for jit's static models
        object.__setattr__(self, "layers", tuple(self.layers))
        object.__setattr__(self, "input_shape", tuple(int(v) for v in shape))
        _check_layers(self.layers)
        try:
            layer_shapes(self.layers, self.input_shape)
        except ValueError as err:
            raise ValueError(f"{self.name} with input shape {self.input_shape}: {err}") from None

    # --- geometry ---------------------------------------------------------------------
    @functools.cached_property
    def shapes(self) -> dict[str, tuple[int, ...]]:
        """Output shape of every layer, without the batch axis."""
        return layer_shapes(self.layers, self.input_shape)

    @functools.cached_property
    def input_shapes(self) -> dict[str, tuple[int, ...]]:
        """Input shape of every layer (the previous layer's output), without the batch axis."""
        return dict(zip(self.names, (self.input_shape, *(self.shapes[n] for n in self.names[:-1]))))

    @functools.cached_property
    def fields(self) -> dict[str, ReceptiveField]:
        return receptive_fields(self.layers)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(layer.name for layer in self.layers)

    @property
    def num_classes(self) -> int:
        return self.shapes[self.layers[-1].name][-1]

    def layer(self, name: str) -> Layer:
        self.check_layer(name)
        return self.layers[self.names.index(name)]

    def check_layer(self, name: str, spatial: bool = False) -> None:
        """Raise unless ``name`` is a layer (with a receptive field, if ``spatial``)."""
        _checks.choice(f"layer of {self.name}", name, self.names)
        if spatial and name not in self.fields:
            why = (f"has no spatial maps (output shape {self.shapes[name]})" if len(self.shapes[name]) != 3 else
                   f"comes after the sliding-window layers, so its units have no receptive field")
            raise ValueError(f"layer {name!r} of {self.name} {why}; choose one of "
                             f"{sorted(self.fields, key=self.names.index)}")

    def receptive_field(self, name: str) -> ReceptiveField:
        self.check_layer(name, spatial=True)
        return self.fields[name]

    def with_input_size(self, input_size: int | tuple[int, int]) -> Model:
        """The same layers, normalization and name at another input size: an integer
        (square) or ``(height, width)``. Params fit both sizes where :attr:`param_shapes`
        agree, as with an adaptive pool before the flatten (alexnet, vgg16, vgg19);
        :meth:`apply` says which do not."""
        h, w = L.as_pair("input_size", input_size)
        return dataclasses.replace(self, input_shape=(h, w, self.input_shape[2]))

    # --- parameters ---------------------------------------------------------------------
    @functools.cached_property
    def param_shapes(self) -> dict[str, dict[str, tuple[int, ...]]]:
        """``{layer: {"kernel": shape, "bias": shape}}`` of every conv and dense layer, in
        the network's order: the tree :meth:`init` draws and :meth:`apply` takes."""
        return {layer.name: {"kernel": _kernel_shape(layer, self.input_shapes[layer.name][-1]),
                             "bias": (layer.features,)}
                for layer in self.layers if layer.has_params}

    def check_params(self, params) -> None:
        """Raise one ValueError listing every missing, unexpected, mis-shaped or
        non-float entry of ``params``. Reads shapes and dtypes only: works under jit."""
        if not isinstance(params, Mapping):
            raise ValueError(f"params must be a dict {{layer: {{'kernel': array, 'bias': array}}}} for {self.name}, "
                             f"got {type(params).__name__}")
        problems = []
        for layer, expected in self.param_shapes.items():
            group = params.get(layer)
            for leaf, shape in expected.items():
                value = group.get(leaf) if isinstance(group, Mapping) else None
                if value is None:
                    problems.append(f"missing params[{layer!r}][{leaf!r}] (expected shape {shape})")
                    continue
                given = tuple(np.shape(value))
                dtype = value.dtype if hasattr(value, "dtype") else np.asarray(value).dtype
                if given != shape:
                    problems.append(f"wrong shape for params[{layer!r}][{leaf!r}]: expected {shape}, got {given}")
                elif not jnp.issubdtype(dtype, jnp.floating):
                    problems.append(f"params[{layer!r}][{leaf!r}] must be floating point, got dtype {dtype}")
        for layer, group in params.items():
            for leaf in (group if isinstance(group, Mapping) else [None]):
                if leaf not in self.param_shapes.get(layer, {}):
                    problems.append(f"unexpected params[{layer!r}]" + ("" if leaf is None else f"[{leaf!r}]"))
        if problems:
            lines = "\n".join(f"  - {p}" for p in problems)
            hint = ("\n(these are Flax variables: pass variables['params'])" if list(params) == ["params"] else "")
            raise ValueError(f"params do not fit model {self.name} (input shape {self.input_shape}): {len(problems)} "
                             f"problem{'s' if len(problems) > 1 else ''}:\n{lines}{hint}")

    def num_params(self, params: Params | None = None) -> int:
        """Parameter count, from the given params or from the architecture alone."""
        if params is not None:
            return sum(int(np.prod(p.shape)) for p in jax.tree_util.tree_leaves(params))
        return sum(math.prod(shape) for group in self.param_shapes.values() for shape in group.values())

    # --- edits: ablations and variants are new tuples ----------------------------------
    def edit(self, **changes: dict) -> Model:
        """A copy with layers' fields changed, all at once, then re-checked, e.g.
        ``edit(conv1=dict(kernel=11, stride=4), conv2=dict(stride=1))``; ints are
        accepted for pairs and paddings."""
        fields = sorted({f.name for f in dataclasses.fields(Layer)} - {"kind", "name"})
        convert = {"kernel": _pair, "stride": _pair, "dilation": _pair, "padding": _padding}
        for name, fields_changed in changes.items():
            self.check_layer(name)
            for key in fields_changed:
                _checks.choice(f"field of layer {name!r}", key, fields)
        layers = tuple(dataclasses.replace(s, **{k: convert.get(k, lambda v: v)(v) for k, v in changes[s.name].items()})
                       if s.name in changes else s for s in self.layers)
        summary = "; ".join(f"{n}: {', '.join(f'{k}={v}' for k, v in c.items())}" for n, c in changes.items())
        return dataclasses.replace(self, name=f"{self.name}[{summary}]", layers=layers)

    def without(self, *names: str) -> Model:
        """A copy with these layers removed (shapes are re-checked)."""
        for name in names:
            self.check_layer(name)
        layers = tuple(s for s in self.layers if s.name not in names)
        return dataclasses.replace(self, name=f"{self.name}-without-{'-'.join(names)}", layers=layers)

    # --- normalization -----------------------------------------------------------------
    def normalize(self, pixels):
        """RGB pixels, NHWC (or HWC), to the network's input space: floats in [0, 1] or
        uint8 in [0, 255], flipped to BGR for a BGR network, then ``(pixels - mean) / std``.

        Concrete float pixels outside [0, 1] (0-255 floats, or inputs normalized already)
        are refused; traced ones (under jit) are not checked.
        """
        dtype = np.dtype(pixels.dtype) if hasattr(pixels, "dtype") else np.asarray(pixels).dtype
        if dtype != np.uint8 and not jnp.issubdtype(dtype, jnp.floating):
            raise ValueError(f"pixels must be uint8 in [0, 255] or floats in [0, 1], got dtype {dtype}")
        shape = np.shape(pixels)
        if len(shape) < 1 or shape[-1] != self.input_shape[-1]:
            raise ValueError(f"pixels must have {self.input_shape[-1]} channels on their last axis (NHWC) for "
                             f"{self.name}, got shape {shape}")
        if dtype != np.uint8 and _checks.is_concrete(pixels) and np.size(pixels):
            _checks.finite(pixels, "pixels")
            lo, hi = float(np.min(pixels)), float(np.max(pixels))
            if lo < 0 or hi > 1:
                hint = ("divide 0-255 floats by 255 or pass uint8" if lo >= 0 and hi <= 255 else
                        "pass pixels, not inputs normalize already gave")
                raise ValueError(f"float pixels must lie in [0, 1] (uint8 pixels in [0, 255]), got values in "
                                 f"[{lo:.4g}, {hi:.4g}]: {hint}")
        pixels = jnp.asarray(pixels)
        if pixels.dtype == jnp.uint8:
            pixels = pixels.astype(jnp.float32) / 255.0
        if self.channel_order == "BGR":
            pixels = pixels[..., ::-1]
        return (pixels - self._channel(self.mean, pixels)) / self._channel(self.std, pixels)

    def denormalize(self, x):
        """Inverse of :meth:`normalize`, giving RGB pixels in [0, 1] (not clipped)."""
        pixels = x * self._channel(self.std, x) + self._channel(self.mean, x)
        return pixels[..., ::-1] if self.channel_order == "BGR" else pixels

    @staticmethod
    def _channel(values, like):
        """Per-channel constants shaped to broadcast over the trailing axis of ``like``."""
        return jnp.asarray(values, jnp.float32).reshape((1,) * (jnp.ndim(like) - 1) + (-1,))

    # --- parameters and forward pass ---------------------------------------------------
    @functools.cached_property
    def _module(self) -> _Network:
        return _Network(self.layers)

    def init(self, key: jax.Array) -> Params:
        """Random parameters: He-normal kernels, zero biases, as ``{layer: {kernel, bias}}``."""
        _checks.prng_key("key", key)
        return flax.core.unfreeze(self._init(key))

    @functools.cached_property
    def _init(self) -> Callable:
        """The jitted initializer, without tracing a forward pass.

        Draws exactly what ``_module.init`` on a dummy batch draws (Flax's
        ``variance_scaling(2.0, "fan_in", "truncated_normal")``, each kernel's key derived
        from its path): the weights are declared from the shapes of the layer tuple, in the
        network's order and under its names. With threefry keys in partitionable mode (JAX's
        default), element ``i`` of a draw depends on ``i`` alone, so kernels of similar size
        are drawn in one batched call, padded to the largest and cut: the threefry rounds,
        which dominate the compile time, are compiled once per group, not once per kernel
        (mnist_cnn: 0.7 s instead of 2.7 s). Other keys take Flax's path.
        """
        shapes = {name: group["kernel"] for name, group in self.param_shapes.items()}

        class _Declare(nn.Module):
            @nn.compact
            def __call__(self):
                for name, shape in shapes.items():
                    _Weights(shape, name=name)()

        class _KernelKey(nn.Module):  # the key Flax hands ``_Weights``'s kernel initializer
            @nn.compact
            def __call__(self):
                return self.param("kernel", lambda rng: rng)

        class _Keys(nn.Module):
            @nn.compact
            def __call__(self):
                for name in shapes:
                    _KernelKey(name=name)()

        sizes = {name: math.prod(shape) for name, shape in shapes.items()}
        groups, group = [], []  # by size, largest first; padding at most doubles a group (or 4M numbers)
        for name in sorted(shapes, key=lambda n: -sizes[n]):
            if group and (len(group) + 1) * sizes[group[0]] > max(
                    2 * (sum(sizes[n] for n in group) + sizes[name]), 1 << 22):
                groups.append(group)
                group = []
            group.append(name)
        groups.append(group)

        def batched(key):
            keys = _Keys().init(key)["params"]
            params = {}
            for group in groups:
                draws = jax.vmap(lambda k, n=sizes[group[0]]: jax.random.truncated_normal(k, -2, 2, (n,), jnp.float32))(
                    jnp.stack([keys[name]["kernel"] for name in group]))
                for i, name in enumerate(group):
                    shape = shapes[name]
                    variance = jnp.array(2.0 / math.prod(shape[:-1]), jnp.float32)
                    stddev = jnp.sqrt(variance) / jnp.array(.87962566103423978, jnp.float32)
                    params[name] = {"kernel": draws[i, :sizes[name]].reshape(shape) * stddev,
                                    "bias": jnp.zeros(shape[-1:], jnp.float32)}
            return {name: params[name] for name in shapes}

        by_flax, by_group = jax.jit(lambda key: _Declare().init(key)["params"]), jax.jit(batched)

        def init(key):
            fast = jax.config.jax_threefry_partitionable and str(jax.random.key_impl(key)) == "threefry2x32"
            return (by_group if fast else by_flax)(key)

        return init

    def apply(self, params: Params, x, rule: str = "gradient", train: bool = False,
              rng: jax.Array | None = None, until: str | None = None):
        """Forward pass. Returns ``(logits, trace)``.

        Args:
          params: ``{layer name: {"kernel", "bias"}}`` from :meth:`init` or an importer,
            shaped as :attr:`param_shapes` (checked, also under jit).
          x: normalized images, NHWC, shape ``(N, *input_shape)``.
          rule: the ReLU backward rule, one of :data:`jaxvis.rules.RULES`. It changes
            only what ``jax.vjp``/``jax.grad`` compute, never the forward values.
          train: dropout on (needs ``rng``).
          until: stop after this layer; the first output is then that layer's output.
        """
        self.check_params(params)
        _checks.images(x, self.input_shape)
        if rng is not None:
            _checks.prng_key("rng", rng)
        relu_fn = rules.get(rule)
        if until is not None:
            self.check_layer(until)
        return self._module.apply({"params": params}, x, relu_fn, train, until, rng)


# ---------------------------------------------------------------------------------------
# The zoo

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def _widths(widths, count: int) -> tuple[int, ...]:
    """``count`` layer widths, each an integer >= 1."""
    if not isinstance(widths, (tuple, list)) or len(widths) != count:
        raise ValueError(f"widths must be {count} integers >= 1, got {widths!r}")
    for i, w in enumerate(widths):
        _checks.count(f"widths[{i}]", w)
    return tuple(int(w) for w in widths)


def _classifier(hidden: int, num_classes: int, dropout_first: bool) -> tuple[Layer, ...]:
    """fc6-fc7-fc8 with dropout: torchvision's AlexNet puts it before each hidden
    dense layer, VGG (and ZFNet, following the paper) after each hidden ReLU."""
    _checks.count("num_classes", num_classes)
    _checks.count("hidden", hidden)
    if dropout_first:
        return (dropout("drop6"), dense("fc6", hidden), relu("relu6"),
                dropout("drop7"), dense("fc7", hidden), relu("relu7"), dense("fc8", num_classes))
    return (dense("fc6", hidden), relu("relu6"), dropout("drop6"),
            dense("fc7", hidden), relu("relu7"), dropout("drop7"), dense("fc8", num_classes))


def mnist_cnn(dilation: int = 1, num_classes: int = 10, widths: tuple[int, int] = (32, 64),
              hidden: int = 128, input_shape=(28, 28, 1), mean=(0.1307,), std=(0.3081,)) -> Model:
    """Four 3x3 convolutions in two blocks, each block ending in a 2x2 max pool.

    ``dilation`` applies to all four convolutions; their padding equals the dilation, so
    every factor keeps the map sizes (28, 14, 7) and the parameter count unchanged.
    """
    _checks.count("dilation", dilation)
    _checks.count("num_classes", num_classes)
    _checks.count("hidden", hidden)
    w1, w2 = _widths(widths, 2)
    d = dilation
    layers = (
        conv("conv1", w1, 3, padding=d, dilation=d), relu("relu1"),
        conv("conv2", w1, 3, padding=d, dilation=d), relu("relu2"), max_pool("pool1", 2),
        conv("conv3", w2, 3, padding=d, dilation=d), relu("relu3"),
        conv("conv4", w2, 3, padding=d, dilation=d), relu("relu4"), max_pool("pool2", 2),
        flatten(), dense("fc5", hidden), relu("relu5"), dropout("drop5"), dense("fc6", num_classes),
    )
    model = Model(f"mnist_cnn(dilation={d})" if d != 1 else "mnist_cnn", layers, input_shape, mean, std)
    for layer in layers:
        hw = model.input_shapes[layer.name][:2]
        if layer.kind == "conv" and max(layer.effective_kernel) > min(hw):
            raise ValueError(f"dilation {d} gives layer {layer.name!r} an effective kernel of "
                             f"{layer.effective_kernel[0]}, larger than its {hw[0]}x{hw[1]} input map: "
                             "most taps would read only padding")
    return model


def _input(name: str, input_size, channels: int, mean, std) -> dict[str, Any]:
    """Input shape and per-channel normalization; ImageNet's constants for 3 channels."""
    h, w = L.as_pair("input_size", input_size)
    _checks.count("channels", channels)
    mean = IMAGENET_MEAN if mean is None and channels == 3 else mean
    std = IMAGENET_STD if std is None and channels == 3 else std
    if mean is None or std is None or np.ndim(mean) != 1 or np.ndim(std) != 1 \
            or len(mean) != channels or len(std) != channels:
        raise ValueError(f"{name} with {channels} input channels needs mean and std with {channels} values each "
                         f"(the data's pixel statistics in [0, 1]), got mean={mean!r}, std={std!r}")
    return dict(input_shape=(h, w, channels), mean=tuple(mean), std=tuple(std))


def alexnet(num_classes: int = 1000, input_size: int | tuple[int, int] = 224, channels: int = 3, mean=None,
            std=None, hidden: int = 4096) -> Model:
    """torchvision's AlexNet (single-tower, 64-192-384-256-256, no normalization), with its
    adaptive average pool to 6x6 before the flatten: any ``input_size`` (an integer or
    ``(height, width)``, at least 63) takes the same parameters."""
    layers = (
        conv("conv1", 64, 11, stride=4, padding=2), relu("relu1"), max_pool("pool1", 3, 2),
        conv("conv2", 192, 5, padding=2), relu("relu2"), max_pool("pool2", 3, 2),
        conv("conv3", 384, 3, padding=1), relu("relu3"),
        conv("conv4", 256, 3, padding=1), relu("relu4"),
        conv("conv5", 256, 3, padding=1), relu("relu5"), max_pool("pool5", 3, 2),
        adaptive_avg_pool("avgpool", 6), flatten(), *_classifier(hidden, num_classes, dropout_first=True),
    )
    return Model("alexnet", layers, **_input("alexnet", input_size, channels, mean, std))


def zfnet(num_classes: int = 1000, widths: tuple[int, int, int, int, int] = (96, 256, 384, 384, 256),
          hidden: int = 4096, input_size: int | tuple[int, int] = 224, channels: int = 3, mean=None,
          std=None) -> Model:
    """Zeiler & Fergus Fig. 3: 7x7 stride-2 first layer, 3x3 stride-2 pooling, contrast
    normalization after layers 1 and 2, maps 110 -> 55 -> 26 -> 13 -> 13 -> 13 -> 6.

    Padding 1 in conv1 and ceil-mode pooling give the paper's 110 and 55. As in the
    paper, no adaptive pool: fc6's fan-in follows from ``input_size``.
    """
    w = _widths(widths, 5)
    layers = (
        conv("conv1", w[0], 7, stride=2, padding=1), relu("relu1"),
        max_pool("pool1", 3, 2, ceil_mode=True), lrn("norm1"),
        conv("conv2", w[1], 5, stride=2), relu("relu2"), max_pool("pool2", 3, 2, ceil_mode=True), lrn("norm2"),
        conv("conv3", w[2], 3, padding=1), relu("relu3"),
        conv("conv4", w[3], 3, padding=1), relu("relu4"),
        conv("conv5", w[4], 3, padding=1), relu("relu5"), max_pool("pool5", 3, 2),
        flatten(), *_classifier(hidden, num_classes, dropout_first=False),
    )
    return Model("zfnet", layers, **_input("zfnet", input_size, channels, mean, std))


def _vgg(name: str, blocks: Sequence[int], num_classes: int, input_size, channels: int, mean, std,
         hidden: int) -> Model:
    layers: list[Layer] = []
    widths = (64, 128, 256, 512, 512)
    for b, (n, width) in enumerate(zip(blocks, widths), start=1):
        for i in range(1, n + 1):
            layers += [conv(f"conv{b}_{i}", width, 3, padding=1), relu(f"relu{b}_{i}")]
        layers.append(max_pool(f"pool{b}", 2))
    layers += [adaptive_avg_pool("avgpool", 7), flatten(), *_classifier(hidden, num_classes, dropout_first=False)]
    return Model(name, tuple(layers), **_input(name, input_size, channels, mean, std))


def vgg16(num_classes: int = 1000, input_size: int | tuple[int, int] = 224, channels: int = 3, mean=None,
          std=None, hidden: int = 4096) -> Model:
    """Simonyan & Zisserman configuration D in torchvision's layout (no batch norm), with
    its adaptive average pool to 7x7: any ``input_size`` of at least 32 takes the same
    parameters."""
    return _vgg("vgg16", (2, 2, 3, 3, 3), num_classes, input_size, channels, mean, std, hidden)


def vgg19(num_classes: int = 1000, input_size: int | tuple[int, int] = 224, channels: int = 3, mean=None,
          std=None, hidden: int = 4096) -> Model:
    """Configuration E in torchvision's layout (no batch norm), as :func:`vgg16`."""
    return _vgg("vgg19", (2, 2, 4, 4, 4), num_classes, input_size, channels, mean, std, hidden)


ZOO: dict[str, Callable[..., Model]] = {
    "mnist_cnn": mnist_cnn, "alexnet": alexnet, "zfnet": zfnet, "vgg16": vgg16, "vgg19": vgg19,
}


def variant(name: str, overrides=None, edits=None, without=()) -> Model:
    """``build(name, **overrides)``, then ``.without(*without)``, then ``.edit(**edits)``:
    how configs and checkpoint cards describe ablations and variants."""
    model = build(name, **dict(overrides or {}))
    if without:
        model = model.without(*without)
    if edits:
        model = model.edit(**{k: dict(v) for k, v in edits.items()})
    return model


def build(name: str, **overrides) -> Model:
    """A zoo model by name; ``overrides`` go to its factory (e.g. ``dilation=2``,
    ``input_size=(300, 451)``), which checks their types and ranges."""
    _checks.choice("model", name, ZOO)
    factory = ZOO[name]
    _checks.keywords(f"model {name!r}", overrides, inspect.signature(factory).parameters)
    return factory(**overrides)
