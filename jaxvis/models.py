"""Architectures as data: layer tuples, the model zoo, and one generic Flax module.

A network is an ordered tuple of :class:`Layer` descriptions. Shapes, receptive fields,
weight import, the explicit deconvnet and incremental occlusion all read the same tuple,
so a new architecture, ablation or dilation setting is a new tuple, not new code.

``Model.apply(params, x, rule=...)`` is the only door into a network. It returns
``(logits, trace)``: ``trace.activations`` maps every layer name to its output and
``trace.switches`` maps every max-pool name to its switches (Zeiler & Fergus Sec. 2.1).
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import math
from collections.abc import Callable, Sequence
from typing import Any

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jaxvis import _checks, layers as L, rules

KINDS = ("conv", "relu", "max_pool", "lrn", "flatten", "dense", "dropout")
SPATIAL_KINDS = ("conv", "relu", "max_pool", "lrn")
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
    ``(size, alpha, beta, k)`` of a local response normalization layer.
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
    names = [layer.name for layer in layers]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise ValueError(f"layer names must be unique, got duplicates {dup}")
    for layer in layers:
        _checks.choice(f"layer kind (layer {layer.name!r})", layer.kind, KINDS)
        if layer.has_params and layer.features < 1:
            raise ValueError(f"layer {layer.name!r} needs features >= 1, got {layer.features}")
        if min(layer.dilation) < 1:
            raise ValueError(f"layer {layer.name!r}: dilation must be >= 1, got {layer.dilation}")
        if min(layer.stride) < 1:
            raise ValueError(f"layer {layer.name!r}: stride must be >= 1, got {layer.stride}")
        if layer.kind in ("conv", "max_pool"):
            if min(layer.kernel) < 1:
                raise ValueError(f"layer {layer.name!r}: kernel must be >= 1, got {layer.kernel}")
            if min(min(p) for p in layer.padding) < 0:
                raise ValueError(f"layer {layer.name!r}: padding must be >= 0, got {layer.padding}")
        if layer.groups < 1:
            raise ValueError(f"layer {layer.name!r}: groups must be >= 1, got {layer.groups}")


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
    """Receptive field of every layer that still has spatial maps."""
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


class _Network(nn.Module):
    layers: tuple[Layer, ...]

    @nn.compact
    def __call__(self, x, relu_fn: Callable, train: bool, until: str | None, rng):
        activations, switches = {}, {}
        for i, layer in enumerate(self.layers):
            if layer.kind == "conv":
                kshape = (*layer.kernel, x.shape[-1] // layer.groups, layer.features)
                kernel, bias = _Weights(kshape, name=layer.name)()
                x = L.conv2d(x, kernel, bias, layer.stride, layer.padding, layer.dilation, layer.groups)
            elif layer.kind == "dense":
                kernel, bias = _Weights((x.shape[-1], layer.features), name=layer.name)()
                x = L.dense(x, kernel, bias)
            elif layer.kind == "relu":
                x = relu_fn(x)
            elif layer.kind == "max_pool":
                x, switches[layer.name] = L.max_pool(x, layer.kernel, layer.stride, layer.padding, layer.ceil_mode)
            elif layer.kind == "lrn":
                x = L.local_response_norm(x, *layer.lrn)
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
    :meth:`normalize` (``(pixels - mean) / std`` on pixels in [0, 1]).
    """

    name: str
    layers: tuple[Layer, ...]
    input_shape: tuple[int, int, int]
    mean: tuple[float, ...] = (0.0,)
    std: tuple[float, ...] = (1.0,)

    def __post_init__(self):
        _check_layers(self.layers)
        layer_shapes(self.layers, self.input_shape)

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
        """Raise unless ``name`` is a layer (with spatial maps, if ``spatial``)."""
        _checks.choice(f"layer of {self.name}", name, self.names)
        if spatial and len(self.shapes[name]) != 3:
            raise ValueError(f"layer {name!r} of {self.name} has no spatial maps (output shape "
                             f"{self.shapes[name]}); choose one of {sorted(self.fields, key=self.names.index)}")

    def receptive_field(self, name: str) -> ReceptiveField:
        self.check_layer(name, spatial=True)
        return self.fields[name]

    def num_params(self, params: Params | None = None) -> int:
        """Parameter count, from the given params or from the architecture alone."""
        if params is not None:
            return sum(int(np.prod(p.shape)) for p in jax.tree_util.tree_leaves(params))
        shapes, count, prev = self.shapes, 0, self.input_shape
        for layer in self.layers:
            if layer.kind == "conv":
                count += math.prod(layer.kernel) * prev[-1] // layer.groups * layer.features + layer.features
            elif layer.kind == "dense":
                count += prev[-1] * layer.features + layer.features
            prev = shapes[layer.name]
        return count

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
        """Pixels in [0, 1] (or uint8 in [0, 255]), NHWC, to the network's input space."""
        dtype = np.dtype(pixels.dtype) if hasattr(pixels, "dtype") else np.asarray(pixels).dtype
        if dtype != np.uint8 and not jnp.issubdtype(dtype, jnp.floating):
            raise ValueError(f"pixels must be uint8 in [0, 255] or floats in [0, 1], got dtype {dtype}")
        pixels = jnp.asarray(pixels)
        if pixels.ndim < 1 or pixels.shape[-1] != self.input_shape[-1]:
            raise ValueError(f"pixels must have {self.input_shape[-1]} channels on their last axis (NHWC) for "
                             f"{self.name}, got shape {pixels.shape}")
        if pixels.dtype == jnp.uint8:
            pixels = pixels.astype(jnp.float32) / 255.0
        return (pixels - self._channel(self.mean, pixels)) / self._channel(self.std, pixels)

    def denormalize(self, x):
        """Inverse of :meth:`normalize`, giving pixels in [0, 1] (not clipped)."""
        return x * self._channel(self.std, x) + self._channel(self.mean, x)

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
        shapes = {}
        for layer in self.layers:
            fan_in = self.input_shapes[layer.name][-1]
            if layer.kind == "conv":
                shapes[layer.name] = (*layer.kernel, fan_in // layer.groups, layer.features)
            elif layer.kind == "dense":
                shapes[layer.name] = (fan_in, layer.features)

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
          params: ``{layer name: {"kernel", "bias"}}`` from :meth:`init` or an importer.
          x: normalized images, NHWC, shape ``(N, *input_shape)``.
          rule: the ReLU backward rule, one of :data:`jaxvis.rules.RULES`. It changes
            only what ``jax.vjp``/``jax.grad`` compute, never the forward values.
          train: dropout on (needs ``rng``).
          until: stop after this layer; the first output is then that layer's output.
        """
        _checks.images(x, self.input_shape)
        relu_fn = rules.get(rule)
        if until is not None:
            self.check_layer(until)
        return self._module.apply({"params": params}, x, relu_fn, train, until, rng)


# ---------------------------------------------------------------------------------------
# The zoo

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def _classifier(hidden: int, num_classes: int, dropout_first: bool) -> tuple[Layer, ...]:
    """fc6-fc7-fc8 with dropout: torchvision's AlexNet puts it before each hidden
    dense layer, VGG (and ZFNet, following the paper) after each hidden ReLU."""
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
    w1, w2 = widths
    d = dilation
    layers = (
        conv("conv1", w1, 3, padding=d, dilation=d), relu("relu1"),
        conv("conv2", w1, 3, padding=d, dilation=d), relu("relu2"), max_pool("pool1", 2),
        conv("conv3", w2, 3, padding=d, dilation=d), relu("relu3"),
        conv("conv4", w2, 3, padding=d, dilation=d), relu("relu4"), max_pool("pool2", 2),
        flatten(), dense("fc5", hidden), relu("relu5"), dropout("drop5"), dense("fc6", num_classes),
    )
    model = Model(f"mnist_cnn(dilation={d})" if d != 1 else "mnist_cnn", layers, tuple(input_shape),
                  tuple(mean), tuple(std))
    for layer in layers:
        hw = model.input_shapes[layer.name][:2]
        if layer.kind == "conv" and max(layer.effective_kernel) > min(hw):
            raise ValueError(f"dilation {d} gives layer {layer.name!r} an effective kernel of "
                             f"{layer.effective_kernel[0]}, larger than its {hw[0]}x{hw[1]} input map: "
                             "most taps would read only padding")
    return model


def _input(name: str, input_size: int, channels: int, mean, std) -> dict[str, Any]:
    """Input shape and per-channel normalization; ImageNet's constants for 3 channels."""
    mean = IMAGENET_MEAN if mean is None and channels == 3 else mean
    std = IMAGENET_STD if std is None and channels == 3 else std
    if mean is None or std is None or len(mean) != channels or len(std) != channels:
        raise ValueError(f"{name} with {channels} input channels needs mean and std with {channels} values each "
                         f"(the data's pixel statistics in [0, 1]), got mean={mean!r}, std={std!r}")
    return dict(input_shape=(input_size, input_size, channels), mean=tuple(mean), std=tuple(std))


def alexnet(num_classes: int = 1000, input_size: int = 224, channels: int = 3, mean=None, std=None) -> Model:
    """torchvision's AlexNet (single-tower, 64-192-384-256-256, no normalization).

    ``input_size`` other than 224 changes fc6's fan-in (torchvision's adaptive average
    pool, which would hide that, is the identity at 224 and is not modelled).
    """
    layers = (
        conv("conv1", 64, 11, stride=4, padding=2), relu("relu1"), max_pool("pool1", 3, 2),
        conv("conv2", 192, 5, padding=2), relu("relu2"), max_pool("pool2", 3, 2),
        conv("conv3", 384, 3, padding=1), relu("relu3"),
        conv("conv4", 256, 3, padding=1), relu("relu4"),
        conv("conv5", 256, 3, padding=1), relu("relu5"), max_pool("pool5", 3, 2),
        flatten(), *_classifier(4096, num_classes, dropout_first=True),
    )
    return Model("alexnet", layers, **_input("alexnet", input_size, channels, mean, std))


def zfnet(num_classes: int = 1000, widths: tuple[int, int, int, int, int] = (96, 256, 384, 384, 256),
          hidden: int = 4096, input_size: int = 224, channels: int = 3, mean=None, std=None) -> Model:
    """Zeiler & Fergus Fig. 3: 7x7 stride-2 first layer, 3x3 stride-2 pooling, contrast
    normalization after layers 1 and 2, maps 110 -> 55 -> 26 -> 13 -> 13 -> 13 -> 6.

    Padding 1 in conv1 and ceil-mode pooling give the paper's 110 and 55.
    """
    w = widths
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


def _vgg(name: str, blocks: Sequence[int], num_classes: int, input_size: int, channels: int, mean, std) -> Model:
    layers: list[Layer] = []
    widths = (64, 128, 256, 512, 512)
    for b, (n, width) in enumerate(zip(blocks, widths), start=1):
        for i in range(1, n + 1):
            layers += [conv(f"conv{b}_{i}", width, 3, padding=1), relu(f"relu{b}_{i}")]
        layers.append(max_pool(f"pool{b}", 2))
    layers += [flatten(), *_classifier(4096, num_classes, dropout_first=False)]
    return Model(name, tuple(layers), **_input(name, input_size, channels, mean, std))


def vgg16(num_classes: int = 1000, input_size: int = 224, channels: int = 3, mean=None, std=None) -> Model:
    """Simonyan & Zisserman configuration D in torchvision's layout (no batch norm)."""
    return _vgg("vgg16", (2, 2, 3, 3, 3), num_classes, input_size, channels, mean, std)


def vgg19(num_classes: int = 1000, input_size: int = 224, channels: int = 3, mean=None, std=None) -> Model:
    """Configuration E in torchvision's layout (no batch norm)."""
    return _vgg("vgg19", (2, 2, 4, 4, 4), num_classes, input_size, channels, mean, std)


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
    """A zoo model by name; ``overrides`` go to its factory (e.g. ``dilation=2``)."""
    _checks.choice("model", name, ZOO)
    factory = ZOO[name]
    allowed = list(inspect.signature(factory).parameters)
    for key in overrides:
        if key not in allowed:
            raise ValueError(f"model {name!r} has no setting {key!r}; its settings are {allowed}")
    return factory(**overrides)
