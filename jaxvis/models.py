"""Architectures as data: layer tuples, the model zoo, and the forward pass over them.

A network is a tuple of layers, each an instance of its kind (:mod:`jaxvis.kinds`,
built here by :func:`conv`, :func:`relu`, ...). A layer reads the layer before it unless
its ``inputs`` name others, so residual networks are tuples too: the tuple lists each
layer after its inputs. Shapes, receptive fields, weight import, the explicit deconvnet
and incremental occlusion all read the same tuple and ask each layer's kind, so a new
architecture, ablation or dilation setting is a new tuple, not new code.

``Model.apply(params, x, rule=...)`` is the only door into a network. It returns
``(logits, trace)``: ``trace.activations`` maps every layer name to its output,
``trace.switches`` every max-pool name to its switches (Zeiler & Fergus Sec. 2.1), and
``trace.state`` every batch-norm name to its updated running statistics (training only).

Params are ``{layer: {leaf: array}}``. Flax derives each kernel's random key from the
layer's name (``Model.init``), so that draws stay those of earlier versions, which
built the network as a Flax module: shipped checkpoints and seeded results depend on
them. Nothing else uses Flax: the forward pass is a loop over the kinds' ops.

torchvision's AlexNet and VGG end their convolutional part with an adaptive average
pool (to 6x6 and 7x7), so they take any input size with the same parameters; so do
:func:`alexnet`, :func:`vgg16` and :func:`vgg19` here (``input_size=(h, w)`` or
:meth:`Model.with_input_size`). ZFNet and the MNIST network, as published, have none:
their first dense layer's size follows from the input size. :func:`resnet18` and
:func:`resnet50` end in a global average pool.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jaxvis import _checks, kinds as K, layers as L, rules
from jaxvis.kinds import INPUT, Layer, ReceptiveField

KINDS = tuple(K.KINDS)
CHANNEL_ORDERS = ("RGB", "BGR")
Params = dict[str, Any]
_pair, _padding = K.pair, K.padding


def conv(name: str, features: int, kernel=3, stride=1, padding=0, dilation=1, groups: int = 1,
         bias: bool = True, inputs=()) -> Layer:
    return K.Conv(name, features=features, kernel=_pair(kernel), stride=_pair(stride), padding=_padding(padding),
                  dilation=_pair(dilation), groups=groups, bias=bias, inputs=inputs)


def relu(name: str, inputs=()) -> Layer:
    return K.ReLU(name, inputs=inputs)


def max_pool(name: str, kernel=2, stride=None, padding=0, ceil_mode: bool = False) -> Layer:
    return K.MaxPool(name, kernel=_pair(kernel), stride=_pair(kernel if stride is None else stride),
                     padding=_padding(padding), ceil_mode=ceil_mode)


def lrn(name: str, size: int = 5, alpha: float = 1e-4, beta: float = 0.75, k: float = 2.0) -> Layer:
    return K.LRN(name, lrn=(size, alpha, beta, k))


def adaptive_avg_pool(name: str = "avgpool", output_size=7) -> Layer:
    """PyTorch's ``AdaptiveAvgPool2d``: maps of any size averaged to ``output_size``
    (see :func:`jaxvis.layers.adaptive_avg_pool`). Not a sliding window: receptive
    fields stop before it."""
    return K.AdaptiveAvgPool(name, output_size=_pair(output_size))


def global_avg_pool(name: str = "avgpool") -> Layer:
    """The mean of each map, ``(H, W, C)`` to ``(C,)``: a ResNet's pool and flatten."""
    return K.GlobalAvgPool(name)


def flatten(name: str = "flatten") -> Layer:
    return K.Flatten(name)


def dense(name: str, features: int) -> Layer:
    return K.Dense(name, features=features)


def dropout(name: str, rate: float = 0.5) -> Layer:
    return K.Dropout(name, rate=rate)


def batch_norm(name: str, eps: float = 1e-5, momentum: float = 0.1) -> Layer:
    return K.BatchNorm(name, eps=eps, momentum=momentum)


def add(name: str, *inputs: str) -> Layer:
    """The sum of the named layers' outputs (a residual connection)."""
    return K.Add(name, inputs=inputs)


# ---------------------------------------------------------------------------------------
# The graph and its geometry


def _check_layers(layers: Sequence[Layer]) -> None:
    for layer in layers:
        if not isinstance(layer, Layer):
            raise ValueError(f"layers must be Layer descriptions (jaxvis.models.conv, relu, ...), "
                             f"got {type(layer).__name__} {layer!r}")
    names = [layer.name for layer in layers]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise ValueError(f"layer names must be unique, got duplicates {dup}")
    if INPUT in names:
        raise ValueError(f"no layer may be called {INPUT!r}: that name stands for the network's input")
    for layer in layers:
        layer.check()


def sources(layers: Sequence[Layer]) -> dict[str, tuple[str, ...]]:
    """Each layer's inputs: the names it gives, else the layer before it (``"input"``,
    the network's input, for the first). Every name must be the network's input or a
    layer listed before it; a cycle is named as such."""
    position = {layer.name: i for i, layer in enumerate(layers)}
    graph = {layer.name: layer.inputs or ((layers[i - 1].name,) if i else (INPUT,))
             for i, layer in enumerate(layers)}
    for i, layer in enumerate(layers):
        for name in graph[layer.name]:
            if name != INPUT and name not in position:
                raise ValueError(f"layer {layer.name!r} takes input {name!r}, which is neither a layer of the "
                                 f"network nor {INPUT!r} (its input)")
            if name != INPUT and position[name] >= i:
                cycle = _cycle(graph, layer.name)
                if cycle:
                    raise ValueError(f"the layers form a cycle: {' -> '.join(cycle)} (each layer's inputs must "
                                     "come before it)")
                raise ValueError(f"layer {layer.name!r} takes input {name!r}, which comes after it in the tuple; "
                                 "list every layer after its inputs")
    return graph


def _cycle(graph: Mapping[str, tuple[str, ...]], start: str) -> list[str] | None:
    """A path of inputs from ``start`` back to itself, or None."""
    stack, seen = [(start, [start])], set()
    while stack:
        name, path = stack.pop()
        for below in graph.get(name, ()):
            if below == start:
                return [start, *reversed(path[1:]), start]  # in the direction data flows
            if below not in seen:
                seen.add(below)
                stack.append((below, path + [below]))
    return None


def layer_shapes(layers: Sequence[Layer], input_shape: tuple[int, int, int]) -> dict[str, tuple[int, ...]]:
    """Each layer's output shape (without the batch axis), checking that every layer fits."""
    shapes = {INPUT: tuple(input_shape)}
    for layer, inputs in zip(layers, sources(layers).values()):
        shapes[layer.name] = layer.output_shape(*(shapes[n] for n in inputs))
    del shapes[INPUT]
    return shapes


def receptive_fields(layers: Sequence[Layer]) -> dict[str, ReceptiveField]:
    """Receptive field of every layer that has one: the sliding-window part, up to the
    first layer whose units see a whole map (an adaptive pool's bins depend on the input
    size, a flatten's units see everything). An addition's field is the union of its
    inputs' fields, where their jumps agree."""
    fields = {INPUT: ReceptiveField((1, 1), (1, 1), (0, 0))}
    for layer, inputs in zip(layers, sources(layers).values()):
        field = layer.field(*(fields.get(n) for n in inputs))
        if field is not None:
            fields[layer.name] = field
    del fields[INPUT]
    return fields


# ---------------------------------------------------------------------------------------
# The forward pass


@functools.partial(jax.tree_util.register_dataclass, data_fields=["activations", "switches", "state"],
                   meta_fields=[])
@dataclasses.dataclass(frozen=True)
class Trace:
    """What a forward pass saw: every layer's output, every max-pool's switches, and in
    training every batch-norm layer's updated running statistics ``{"mean", "var"}``."""

    activations: dict[str, jax.Array]
    switches: dict[str, jax.Array]
    state: dict[str, dict[str, jax.Array]] = dataclasses.field(default_factory=dict)


class _KernelKey(nn.Module):
    """The key Flax hands the initializer of a parameter named ``kernel`` in a module
    named after the layer: how jaxvis has always drawn its kernels."""

    @nn.compact
    def __call__(self):
        return self.param("kernel", lambda rng: rng)


_HE_NORMAL = nn.initializers.variance_scaling(2.0, "fan_in", "truncated_normal")


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
    def sources(self) -> dict[str, tuple[str, ...]]:
        """The layers (or ``"input"``) each layer reads, in the tuple's order."""
        return sources(self.layers)

    @functools.cached_property
    def input_shapes(self) -> dict[str, tuple[int, ...]]:
        """Input shape of every layer (its first input's output), without the batch axis."""
        shapes = {INPUT: self.input_shape, **self.shapes}
        return {name: shapes[inputs[0]] for name, inputs in self.sources.items()}

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
        """``{layer: {leaf: shape}}`` of every layer with params (conv and dense:
        ``kernel`` and ``bias``; batch norm: ``scale``, ``bias`` and the running ``mean``
        and ``var``), in the network's order: the tree :meth:`init` draws and
        :meth:`apply` takes."""
        groups = {layer.name: layer.param_shapes(self.input_shapes[layer.name]) for layer in self.layers}
        return {name: group for name, group in groups.items() if group}

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
                    problems.append(f"missing params[{layer!r}][{leaf!r}] (expected shape {shape})"
                                    + self.layer(layer).param_note(leaf))
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
        """Parameter count, from the given params or from the architecture alone. Batch
        norm's running statistics are state, not parameters (as in PyTorch's count)."""
        groups = self.param_shapes if params is None else jax.tree.map(np.shape, params)
        return sum(math.prod(shape) for name, group in groups.items() for leaf, shape in group.items()
                   if leaf not in self.layer(name).statistics)

    # --- edits: ablations and variants are new tuples ----------------------------------
    def edit(self, **changes: dict) -> Model:
        """A copy with layers' fields changed, all at once, then re-checked, e.g.
        ``edit(conv1=dict(kernel=11, stride=4), conv2=dict(stride=1))``; ints are
        accepted for pairs and paddings."""
        convert = {"kernel": _pair, "stride": _pair, "dilation": _pair, "padding": _padding}
        for name, fields_changed in changes.items():
            fields = sorted({f.name for f in dataclasses.fields(self.layer(name))} - {"name", "inputs"})
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
    def init(self, key: jax.Array) -> Params:
        """Random parameters: He-normal kernels, zero biases, batch norm as the identity
        (scale 1, bias 0, running mean 0, variance 1), as ``{layer: {leaf: array}}``."""
        _checks.prng_key("key", key)
        return self._init(key)

    @functools.cached_property
    def _init(self) -> Callable:
        """The jitted initializer.

        Draws what jaxvis has always drawn, the Flax network of earlier versions on a
        dummy batch: Flax's ``variance_scaling(2.0, "fan_in", "truncated_normal")`` with
        each kernel's key derived by Flax from its layer's name. With threefry keys in
        partitionable mode (JAX's default), element ``i`` of a draw depends on ``i``
        alone, so kernels of similar size are drawn in one batched call, padded to the
        largest and cut: the threefry rounds, which dominate the compile time, are
        compiled once per group, not once per kernel (mnist_cnn: 0.7 s instead of 2.7 s).
        Other keys draw each kernel alone. Every other param is its kind's constant.
        """
        shapes = {name: group["kernel"] for name, group in self.param_shapes.items() if "kernel" in group}

        class _Keys(nn.Module):
            @nn.compact
            def __call__(self):
                return {name: _KernelKey(name=name)() for name in shapes}

        sizes = {name: math.prod(shape) for name, shape in shapes.items()}
        groups, group = [], []  # by size, largest first; padding at most doubles a group (or 4M numbers)
        for name in sorted(shapes, key=lambda n: -sizes[n]):
            if group and (len(group) + 1) * sizes[group[0]] > max(
                    2 * (sum(sizes[n] for n in group) + sizes[name]), 1 << 22):
                groups.append(group)
                group = []
            group.append(name)
        groups += [group] if group else []

        def batched(keys):
            kernels = {}
            for group in groups:
                draws = jax.vmap(lambda k, n=sizes[group[0]]: jax.random.truncated_normal(k, -2, 2, (n,), jnp.float32))(
                    jnp.stack([keys[name] for name in group]))
                for i, name in enumerate(group):
                    shape = shapes[name]
                    variance = jnp.array(2.0 / math.prod(shape[:-1]), jnp.float32)
                    stddev = jnp.sqrt(variance) / jnp.array(.87962566103423978, jnp.float32)
                    kernels[name] = draws[i, :sizes[name]].reshape(shape) * stddev
            return kernels

        def one_by_one(keys):
            return {name: _HE_NORMAL(keys[name], shape, jnp.float32) for name, shape in shapes.items()}

        def draw(kernels):
            def init(key):
                keys = _Keys().init_with_output(key)[0]
                drawn = kernels(keys)
                return {name: {leaf: drawn[name] if leaf == "kernel" else
                               jnp.full(shape, self.layer(name).initial[leaf], jnp.float32)
                               for leaf, shape in group.items()} for name, group in self.param_shapes.items()}
            return jax.jit(init)

        by_group, by_kernel = draw(batched), draw(one_by_one)

        def init(key):
            fast = jax.config.jax_threefry_partitionable and str(jax.random.key_impl(key)) == "threefry2x32"
            return (by_group if fast else by_kernel)(key)

        return init

    def apply(self, params: Params, x, rule: str = "gradient", train: bool = False,
              rng: jax.Array | None = None, until: str | None = None, at: Mapping[str, Any] | None = None):
        """Forward pass. Returns ``(logits, trace)``.

        Args:
          params: ``{layer name: {leaf: array}}`` from :meth:`init` or an importer,
            shaped as :attr:`param_shapes` (checked, also under jit).
          x: normalized images, NHWC, shape ``(N, *input_shape)``.
          rule: the ReLU backward rule, one of :data:`jaxvis.rules.RULES`. It changes
            only what ``jax.vjp``/``jax.grad`` compute, never the forward values.
          train: dropout on (needs ``rng``), batch norm on the batch's statistics
            (the updated running statistics are in ``trace.state``).
          until: stop after this layer; the first output is then that layer's output.
          at: ``{layer: delta}``, added to the layer's output (``(N, *shapes[layer])``)
            before the layers above read it, and in the trace. With zeros the values are
            unchanged and the derivative with respect to ``delta`` is ``dS/dA``, the
            output's with respect to the layer's maps ``A``, also across skip
            connections (see :func:`check_at`).
        """
        self.check_params(params)
        _checks.images(x, self.input_shape)
        if rng is not None:
            _checks.prng_key("rng", rng)
        relu_fn = rules.get(rule)
        if until is not None:
            self.check_layer(until)
        check_at(self, at, np.shape(x)[0])
        return self.run(params, {INPUT: x}, K.Run(relu_fn, train, rng), until=until, at=at)

    def run(self, params: Params, values: dict, run: K.Run, after: str | None = None, until: str | None = None,
            at: Mapping[str, Any] | None = None):
        """The layers after ``after`` (default: all) up to ``until`` (default: the last),
        unchecked, given in ``values`` the outputs they read from before ``after``
        (``{"input": x}`` for the whole network), with ``at``'s deltas added to their
        layers' outputs. Returns ``(output, trace)``."""
        activations, start = {}, 0 if after is None else self.names.index(after) + 1
        for i, layer in enumerate(self.layers[start:], start):
            run.index = i
            x = layer.forward(params.get(layer.name), tuple(activations[n] if n in activations else values[n]
                                                             for n in self.sources[layer.name]), run)
            if at and layer.name in at:
                x = x + at[layer.name]
            activations[layer.name] = x
            if layer.name == until:
                break
        return x, Trace(activations, run.switches, run.state)


def check_at(model, at: Mapping[str, Any] | None, batch: int) -> None:
    """Raise unless ``at`` maps layers of ``model`` to deltas of their outputs' shape
    ``(batch, *model.shapes[layer])`` (reads shapes only: works under jit)."""
    if at is None:
        return
    if not isinstance(at, Mapping):
        raise ValueError(f"at must be a dict {{layer: delta}}, got {type(at).__name__}")
    for name, delta in at.items():
        model.check_layer(name)
        expected = (batch, *model.shapes[name])
        if tuple(np.shape(delta)) != expected:
            raise ValueError(f"at[{name!r}] must have the layer's output shape {expected}, got {np.shape(delta)}")


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
        if layer.convolution and max(layer.effective_kernel) > min(hw):
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
         hidden: int, norm: bool = False) -> Model:
    layers: list[Layer] = []
    widths = (64, 128, 256, 512, 512)
    for b, (n, width) in enumerate(zip(blocks, widths), start=1):
        for i in range(1, n + 1):
            layers += [conv(f"conv{b}_{i}", width, 3, padding=1), *([batch_norm(f"bn{b}_{i}")] if norm else []),
                       relu(f"relu{b}_{i}")]
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


def vgg16_bn(num_classes: int = 1000, input_size: int | tuple[int, int] = 224, channels: int = 3, mean=None,
             std=None, hidden: int = 4096) -> Model:
    """:func:`vgg16` with batch norm after every convolution (torchvision's ``vgg16_bn``)."""
    return _vgg("vgg16_bn", (2, 2, 3, 3, 3), num_classes, input_size, channels, mean, std, hidden, norm=True)


def _block(prefix: str, source: str, width: int, stride: int, expansion: int, in_channels: int) -> list[Layer]:
    """One residual block in torchvision's names: BasicBlock (``expansion`` 1: two 3x3
    convolutions) or Bottleneck (4: 1x1, 3x3 with the stride, 1x1 to ``4 * width``), each
    followed by batch norm; the shortcut is ``source`` itself, or a strided 1x1
    convolution and batch norm (``downsample``) where the shape changes; then the sum and
    a ReLU."""
    p = prefix
    if expansion == 1:
        convs = [(width, 3, stride, 1), (width, 3, 1, 1)]
    else:
        convs = [(width, 1, 1, 0), (width, 3, stride, 1), (width * expansion, 1, 1, 0)]
    layers: list[Layer] = []
    for i, (features, kernel, s, pad) in enumerate(convs, start=1):
        layers += [conv(f"{p}.conv{i}", features, kernel, stride=s, padding=pad, bias=False), batch_norm(f"{p}.bn{i}")]
        if i < len(convs):
            layers.append(relu(f"{p}.relu{i}"))
    shortcut = source
    if stride != 1 or in_channels != width * expansion:
        layers += [conv(f"{p}.downsample.0", width * expansion, 1, stride=stride, bias=False, inputs=(source,)),
                   batch_norm(f"{p}.downsample.1")]
        shortcut = f"{p}.downsample.1"
    return layers + [add(f"{p}.add", f"{p}.bn{len(convs)}", shortcut), relu(f"{p}.relu")]


def _resnet(name: str, blocks: Sequence[int], expansion: int, num_classes: int, input_size, channels: int, mean,
            std, width: int) -> Model:
    """He et al.'s ResNet in torchvision's layout and names (``conv1``, ``bn1``, ``relu``,
    ``maxpool``, ``layer1.0.conv1`` ... ``layer4``, ``avgpool``, ``fc``); the stride of
    a Bottleneck sits on its 3x3 convolution (torchvision's "ResNet v1.5")."""
    _checks.count("num_classes", num_classes)
    _checks.count("width", width)
    layers: list[Layer] = [conv("conv1", width, 7, stride=2, padding=3, bias=False), batch_norm("bn1"), relu("relu"),
                           max_pool("maxpool", 3, 2, padding=1)]
    source, in_channels = "maxpool", width
    for stage, count in enumerate(blocks, start=1):
        planes = width * 2 ** (stage - 1)
        for b in range(count):
            layers += _block(f"layer{stage}.{b}", source, planes, 2 if stage > 1 and b == 0 else 1, expansion,
                             in_channels)
            source, in_channels = f"layer{stage}.{b}.relu", planes * expansion
    layers += [global_avg_pool("avgpool"), dense("fc", num_classes)]
    return Model(name, tuple(layers), **_input(name, input_size, channels, mean, std))


def resnet18(num_classes: int = 1000, input_size: int | tuple[int, int] = 224, channels: int = 3, mean=None,
             std=None, width: int = 64) -> Model:
    """torchvision's ResNet-18: BasicBlocks (2, 2, 2, 2), 11,689,512 parameters at 1000
    classes. ``width`` is the first stage's (64; the stages double it): smaller values
    give small networks of the same shape. Any input size (a global average pool)."""
    return _resnet("resnet18", (2, 2, 2, 2), 1, num_classes, input_size, channels, mean, std, width)


def resnet50(num_classes: int = 1000, input_size: int | tuple[int, int] = 224, channels: int = 3, mean=None,
             std=None, width: int = 64) -> Model:
    """torchvision's ResNet-50: Bottlenecks (3, 4, 6, 3), 25,557,032 parameters at 1000
    classes; ``width`` as in :func:`resnet18`."""
    return _resnet("resnet50", (3, 4, 6, 3), 4, num_classes, input_size, channels, mean, std, width)


ZOO: dict[str, Callable[..., Model]] = {
    "mnist_cnn": mnist_cnn, "alexnet": alexnet, "zfnet": zfnet, "vgg16": vgg16, "vgg19": vgg19,
    "vgg16_bn": vgg16_bn, "resnet18": resnet18, "resnet50": resnet50,
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
