"""The components of a ConvNet and of the deconvnet that inverts it, as pure functions.

Forward ops (Zeiler & Fergus Sec. 2): convolution, max pooling that also returns its
*switches* (the argmax inside each window), local response (contrast) normalization,
adaptive average pooling (torchvision's AlexNet and VGG), dense, flatten, dropout.
Inverse ops (Sec. 2.1): ``unpool`` places each value at its switch, ``unrelu`` rectifies
the signal going down, ``deconv`` applies the transposed filters (flipped spatially,
input and output channels swapped), ``adaptive_avg_unpool`` spreads each average back
over its bin.

All arrays are NHWC; kernels are HWIO (height, width, in/groups, out). Every op checks
the shapes and settings it is given (static, so also under ``jit``) and raises a
``ValueError`` saying what it expected; values are not checked here (the ops run traced
inside every caller; :mod:`jaxvis.models` checks inputs where they are concrete).
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from jaxvis import _checks

Pair = tuple[int, int]
Padding = tuple[Pair, Pair]

_DIMS = ("NHWC", "HWIO", "NHWC")


def _is_int(v) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_))


def _array(what: str, x, rank: int, layout: str, floating: bool = True) -> None:
    """Raise unless ``x`` is an array of rank ``rank`` (floating point if ``floating``)."""
    if not hasattr(x, "shape") or not hasattr(x, "dtype"):
        raise ValueError(f"{what} must be an array of rank {rank} ({layout}), got {type(x).__name__}")
    if x.ndim != rank:
        raise ValueError(f"{what} must have rank {rank} ({layout}), got shape {tuple(x.shape)}")
    if floating and not jnp.issubdtype(x.dtype, jnp.floating):
        raise ValueError(f"{what} must be floating point, got dtype {x.dtype}")


def as_pair(what: str, value, minimum: int = 1) -> Pair:
    """``value`` (an integer or two) as a pair of integers ``>= minimum``, or a ValueError."""
    pair = (value, value) if _is_int(value) else value
    if not isinstance(pair, (tuple, list)) or len(pair) != 2 or not all(_is_int(v) and v >= minimum for v in pair):
        raise ValueError(f"{what} must be an integer or 2 integers >= {minimum}, got {value!r}")
    return tuple(int(v) for v in pair)


def as_padding(what: str, value, minimum: int | None = 0) -> Padding:
    """``((top, bottom), (left, right))`` of integers (``>= minimum`` unless it is None)."""
    ok = (isinstance(value, (tuple, list)) and len(value) == 2
          and all(isinstance(p, (tuple, list)) and len(p) == 2 and all(_is_int(v) and (minimum is None or v >= minimum)
                                                                       for v in p) for p in value))
    if not ok:
        bound = "" if minimum is None else f" >= {minimum}"
        raise ValueError(f"{what} must be ((top, bottom), (left, right)) of integers{bound}, got {value!r}")
    return tuple(tuple(int(v) for v in p) for p in value)


def _bias(bias_O, features: int) -> None:
    if bias_O is not None and tuple(np.shape(bias_O)) != (features,):
        raise ValueError(f"bias must have shape ({features},), one per output feature, got {tuple(np.shape(bias_O))}")


def conv2d(x_NHWC, kernel_HWIO, bias_O=None, stride: Pair = (1, 1), padding: Padding = ((0, 0), (0, 0)),
           dilation: Pair = (1, 1), groups: int = 1):
    """2-D cross-correlation with explicit padding, dilation and feature groups.

    Inside :func:`per_model_convolutions`, a ``vmap`` over this function runs one
    convolution per mapped element instead of one grouped convolution (same values).
    Padding may be negative (it then crops the input).
    """
    geometry = _conv_geometry(x_NHWC, kernel_HWIO, stride, padding, dilation, groups)
    _bias(bias_O, kernel_HWIO.shape[3])
    y = _looped_conv(*geometry)(x_NHWC, kernel_HWIO) if _PER_MODEL.get() else _conv(x_NHWC, kernel_HWIO, *geometry)
    return y if bias_O is None else y + bias_O.reshape(1, 1, 1, -1)


def _conv_geometry(x_NHWC, kernel_HWIO, stride, padding, dilation, groups):
    """The checked ``(stride, padding, dilation, groups)`` of a convolution of ``x`` with ``kernel``."""
    _array("x", x_NHWC, 4, "NHWC")
    _array("kernel", kernel_HWIO, 4, "HWIO: height, width, in/groups, out")
    stride, dilation = as_pair("stride", stride), as_pair("dilation", dilation)
    _checks.count("groups", groups)
    padding, groups = as_padding("padding", padding, minimum=None), int(groups)
    kh, kw, cin_g, cout = kernel_HWIO.shape
    if x_NHWC.shape[3] != cin_g * groups or cout % groups:
        raise ValueError(f"kernel of shape {tuple(kernel_HWIO.shape)} with groups={groups} takes {cin_g * groups} "
                         f"input channels (and out channels divisible by groups), got x of shape "
                         f"{tuple(x_NHWC.shape)} with {x_NHWC.shape[3]}")
    for a, k in enumerate((kh, kw)):
        padded, k_eff = x_NHWC.shape[1 + a] + sum(padding[a]), (k - 1) * dilation[a] + 1
        if k_eff > padded:
            raise ValueError(f"effective kernel {k_eff} (kernel {k}, dilation {dilation[a]}) is larger than the "
                             f"padded input {padded} along {'rows' if a == 0 else 'columns'} "
                             f"(x of shape {tuple(x_NHWC.shape)}, padding {padding[a]})")
    return stride, padding, dilation, groups


def _conv(x_NHWC, kernel_HWIO, stride, padding, dilation, groups):
    return lax.conv_general_dilated(x_NHWC, kernel_HWIO, window_strides=stride, padding=padding,
                                    rhs_dilation=dilation, dimension_numbers=_DIMS, feature_group_count=groups)


_PER_MODEL = contextvars.ContextVar("jaxvis_per_model_convolutions", default=False)


@contextlib.contextmanager
def per_model_convolutions():
    """While a function is traced inside this block, ``jax.vmap`` of :func:`conv2d` over
    a batch of kernels (several models) loops over the models, forward and both
    gradients, instead of writing one grouped convolution; values are unchanged.

    XLA:CPU runs grouped convolutions slowly; ``train_many(strategy="hybrid")`` traces its
    vmapped step in this block. The setting is a context variable: other threads are not
    affected.
    """
    token = _PER_MODEL.set(True)
    try:
        yield
    finally:
        _PER_MODEL.reset(token)


def _loop_when_vmapped(fn):
    """``fn``, whose ``vmap`` calls it once per mapped element and stacks the results."""
    fn = jax.custom_batching.custom_vmap(fn)

    @fn.def_vmap
    def rule(axis_size, in_batched, *args):
        outs = [fn(*(a[i] if batched else a for a, batched in zip(args, in_batched))) for i in range(axis_size)]
        stacked = jax.tree.map(lambda *parts: jnp.stack(parts), *outs)
        return stacked, jax.tree.map(lambda _: True, stacked)

    return fn


@functools.lru_cache(maxsize=None)
def _looped_conv(stride, padding, dilation, groups):
    """The convolution, looped under ``vmap``. ``custom_vmap`` functions cannot be
    differentiated, so the forward pass and its VJP are each one, tied by ``custom_vjp``:
    autodiff never sees the loop, and ``vmap`` of the gradient loops the input- and
    kernel-gradient convolutions too."""
    def conv(x, kernel):
        return _conv(x, kernel, stride, padding, dilation, groups)

    forward = _loop_when_vmapped(conv)
    backward = _loop_when_vmapped(lambda x, kernel, g: jax.vjp(conv, x, kernel)[1](g))

    @jax.custom_vjp
    def looped(x, kernel):
        return forward(x, kernel)

    looped.defvjp(lambda x, kernel: (forward(x, kernel), (x, kernel)), lambda res, g: backward(*res, g))
    return looped


# Winograd's minimal filtering F(2x2, 3x3) (Lavin & Gray, CVPR 2016): each 2x2 output
# tile from a 4x4 input tile with 16 multiplications instead of 36. ``_G`` transforms the
# kernel; the input and output transforms (B^T, A^T) only add and subtract.
_WINOGRAD_G = ((1.0, 0.0, 0.0), (0.5, 0.5, 0.5), (0.5, -0.5, 0.5), (0.0, 0.0, 1.0))


def winograd_kernel(kernel_HWIO):
    """A 3x3 kernel ``(3, 3, I, O)`` in Winograd's domain, ``(16, I, O)``, for :func:`winograd_conv`."""
    _array("kernel", kernel_HWIO, 4, "HWIO")
    if kernel_HWIO.shape[:2] != (3, 3):
        raise ValueError(f"Winograd F(2x2, 3x3) needs a 3x3 kernel, got shape {kernel_HWIO.shape}")
    g = jnp.asarray(_WINOGRAD_G, kernel_HWIO.dtype)
    u = jnp.einsum("ai,ijcd,bj->abcd", g, kernel_HWIO, g, precision=lax.Precision.HIGHEST)
    return u.reshape(16, *kernel_HWIO.shape[2:])


def _winograd_input(rows):
    """B^T applied along a list of 4 slices: ``(d0 - d2, d1 + d2, d2 - d1, d1 - d3)``."""
    return [rows[0] - rows[2], rows[1] + rows[2], rows[2] - rows[1], rows[1] - rows[3]]


def _winograd_output(m):
    """A^T applied along a list of 4 slices: ``(m0 + m1 + m2, m1 - m2 - m3)``."""
    return [m[0] + m[1] + m[2], m[1] - m[2] - m[3]]


def winograd_conv(x_NHWC, u_16IO):
    """Unpadded stride-1 3x3 convolution (no bias) by Winograd's F(2x2, 3x3).

    Equal to :func:`conv2d` with the kernel ``u`` came from (:func:`winograd_kernel`) to
    float rounding (about 1e-6 of the output's scale), with 4 multiply-adds per output
    value and input channel instead of 9. On XLA:CPU it beats the direct convolution only
    for wide layers (hundreds of channels), where the 16 matrix products dominate the
    transforms.
    """
    _array("x", x_NHWC, 4, "NHWC")
    _array("u", u_16IO, 3, "(16, in, out) from winograd_kernel")
    if u_16IO.shape[0] != 16 or u_16IO.shape[1] != x_NHWC.shape[3] or min(x_NHWC.shape[1:3]) < 3:
        raise ValueError(f"winograd_conv needs x of at least 3x3 pixels with the kernel's {u_16IO.shape[1]} input "
                         f"channels and u of shape (16, in, out), got x {tuple(x_NHWC.shape)}, u {tuple(u_16IO.shape)}")
    n, h, w, _ = x_NHWC.shape
    ho, wo = h - 2, w - 2
    th, tw = -(-ho // 2), -(-wo // 2)
    x = jnp.pad(x_NHWC, ((0, 0), (0, 2 * th + 2 - h), (0, 2 * tw + 2 - w), (0, 0)))
    rows = _winograd_input([x[:, a:a + 2 * th:2] for a in range(4)])
    tiles = jnp.stack([v for r in rows for v in _winograd_input([r[:, :, b:b + 2 * tw:2] for b in range(4)])])
    m = jnp.einsum("knhwi,kio->knhwo", tiles, u_16IO, precision=lax.Precision.HIGHEST)
    m = m.reshape(4, 4, *m.shape[1:])  # (row a, column b) of the transformed tile
    y = [_winograd_output(list(row)) for row in _winograd_output(list(m))]  # y[a][b]: output (a, b) of each tile
    y = jnp.stack([jnp.stack(row, axis=3) for row in y], axis=2)  # (n, tile row, a, tile column, b, out)
    return y.reshape(n, 2 * th, 2 * tw, -1)[:, :ho, :wo]


def transpose_kernel(kernel_HWIO, groups: int = 1):
    """The deconvnet filter: flipped spatially with input and output channels swapped.

    For grouped convolutions the swap happens within each group, so the result is a
    valid HWIO kernel for a convolution with the same ``groups``.
    """
    _array("kernel", kernel_HWIO, 4, "HWIO")
    _checks.count("groups", groups)
    kh, kw, cin_g, cout = kernel_HWIO.shape
    if cout % groups:
        raise ValueError(f"kernel's {cout} output channels must divide by groups={groups}")
    k = kernel_HWIO.reshape(kh, kw, cin_g, groups, cout // groups)
    k = jnp.transpose(k, (0, 1, 4, 3, 2)).reshape(kh, kw, cout // groups, groups * cin_g)
    return k[::-1, ::-1]


def deconv(y_NHWC, kernel_HWIO, input_hw: Pair, stride: Pair = (1, 1),
           padding: Padding = ((0, 0), (0, 0)), dilation: Pair = (1, 1), groups: int = 1):
    """Map a signal on a conv layer's output back to its input with the transposed filters.

    ``input_hw`` is the spatial size of the forward input: with stride > 1 several input
    sizes give the same output size, so it cannot be inferred.
    """
    input_hw = as_pair("input_hw", input_hw)
    _array("y", y_NHWC, 4, "NHWC")
    x_shape = jax.ShapeDtypeStruct((y_NHWC.shape[0], *input_hw, kernel_HWIO.shape[2] * groups), y_NHWC.dtype)
    stride, padding, dilation, groups = _conv_geometry(x_shape, kernel_HWIO, stride, padding, dilation, groups)
    forward = (y_NHWC.shape[0], *((input_hw[a] + sum(padding[a]) - (kernel_HWIO.shape[a] - 1) * dilation[a] - 1)
                                  // stride[a] + 1 for a in range(2)), kernel_HWIO.shape[3])
    if tuple(y_NHWC.shape) != forward:
        raise ValueError(f"y must have the shape {forward} of the convolution's output for an input of "
                         f"{input_hw[0]}x{input_hw[1]} pixels, got {tuple(y_NHWC.shape)}")
    pads = []
    for axis in range(2):
        k_eff = (kernel_HWIO.shape[axis] - 1) * dilation[axis] + 1
        lo = k_eff - 1 - padding[axis][0]
        out = y_NHWC.shape[1 + axis]
        hi = input_hw[axis] + padding[axis][0] - (out - 1) * stride[axis] - 1
        pads.append((lo, hi))
    return lax.conv_general_dilated(
        y_NHWC, transpose_kernel(kernel_HWIO, groups), window_strides=(1, 1), padding=pads,
        lhs_dilation=stride, rhs_dilation=dilation, dimension_numbers=_DIMS,
        feature_group_count=groups)


def relu(x):
    """The forward rectifier. Backward rules live in :mod:`jaxvis.rules`."""
    return jnp.maximum(x, 0)


def unrelu(signal):
    """The deconvnet's rectification of the reconstruction on its way down."""
    return jnp.maximum(signal, 0)


def pool_output_size(size: int, window: int, stride: int, pad: Pair, ceil_mode: bool) -> int:
    """Output length of a pooling window along one axis (PyTorch's rule for ceil mode)."""
    for what, v in (("size", size), ("window", window), ("stride", stride)):
        _checks.count(what, v)
    pad = as_padding("pad", (pad, (0, 0)))[0]
    span = size + pad[0] + pad[1] - window
    if span < 0:
        raise ValueError(f"pooling window {window} is larger than the padded input {size + pad[0] + pad[1]} "
                         f"(size {size}, padding {pad})")
    out = (math.ceil(span / stride) if ceil_mode else span // stride) + 1
    if ceil_mode and (out - 1) * stride >= size + pad[0]:
        out -= 1  # the last window must start inside the image or its left padding
    return out


def _pool_geometry(hw: Pair, window: Pair, stride: Pair, padding: Padding, ceil_mode: bool):
    """Output size and the (lo, hi) padding that makes every window fit."""
    window, stride, padding = as_pair("window", window), as_pair("stride", stride), as_padding("padding", padding)
    if not isinstance(ceil_mode, (bool, np.bool_)):
        raise ValueError(f"ceil_mode must be a bool, got {ceil_mode!r}")
    out, pads = [], []
    for a in range(2):
        o = pool_output_size(hw[a], window[a], stride[a], padding[a], ceil_mode)
        hi = (o - 1) * stride[a] + window[a] - hw[a] - padding[a][0]
        out.append(o)
        pads.append((padding[a][0], hi))
    return tuple(out), tuple(pads)


def max_pool(x_NHWC, window: Pair, stride: Pair, padding: Padding = ((0, 0), (0, 0)),
             ceil_mode: bool = False):
    """Max pooling that also returns the switches.

    Returns ``(y, switches)``, where ``switches`` holds, for each output value, the
    row-major index ``dy * window[1] + dx`` of the maximum inside its window (the first
    one on ties, as PyTorch does). ``y`` is gathered *through* the switches, so its
    vector-Jacobian product routes the signal exactly to the switch positions, also in
    overlapping windows and on ties (where ``jnp.max`` would split it).
    """
    _array("x", x_NHWC, 4, "NHWC")
    window, stride = as_pair("window", window), as_pair("stride", stride)
    n, h, w, c = x_NHWC.shape
    (ho, wo), pads = _pool_geometry((h, w), window, stride, padding, ceil_mode)
    # lax.pad, unlike jnp.pad, takes negative padding: a floor-mode tail that no window reads.
    xp = lax.pad(x_NHWC, jnp.array(-jnp.inf, x_NHWC.dtype), ((0, 0, 0), (*pads[0], 0), (*pads[1], 0), (0, 0, 0)))
    views = [
        lax.slice(xp, (0, dy, dx, 0), (n, dy + (ho - 1) * stride[0] + 1, dx + (wo - 1) * stride[1] + 1, c),
                  (1, stride[0], stride[1], 1))
        for dy in range(window[0]) for dx in range(window[1])
    ]
    switches = jnp.argmax(jnp.stack(views), axis=0).astype(jnp.int32)
    # the value at the switch, as a sum of masked views: its VJP is dense masking (no scatter)
    zero = jnp.zeros((), x_NHWC.dtype)
    y = sum(jnp.where(switches == k, view, zero) for k, view in enumerate(views))
    return y, switches


def unpool(y_NHWC, switches, input_hw: Pair, window: Pair, stride: Pair,
           padding: Padding = ((0, 0), (0, 0)), ceil_mode: bool = False):
    """Place each value at its switch position in the pooling layer's input.

    Values of overlapping windows that share a switch position add up.
    """
    _array("y", y_NHWC, 4, "NHWC")
    _array("switches", switches, 4, "NHWC, from max_pool", floating=False)
    if not jnp.issubdtype(switches.dtype, jnp.integer):
        raise ValueError(f"switches must be integer window indices (from max_pool), got dtype {switches.dtype}")
    input_hw, window, stride = as_pair("input_hw", input_hw), as_pair("window", window), as_pair("stride", stride)
    (ho, wo), pads = _pool_geometry(input_hw, window, stride, padding, ceil_mode)
    if tuple(switches.shape) != tuple(y_NHWC.shape) or tuple(y_NHWC.shape[1:3]) != (ho, wo):
        raise ValueError(f"y and switches must both have the pooled shape (N, {ho}, {wo}, C) of an input of "
                         f"{input_hw[0]}x{input_hw[1]} pixels, got y {tuple(y_NHWC.shape)}, "
                         f"switches {tuple(switches.shape)}")
    hp = input_hw[0] + pads[0][0] + max(pads[0][1], 0)
    wp = input_hw[1] + pads[1][0] + max(pads[1][1], 0)
    zero = jnp.zeros((), y_NHWC.dtype)
    out = jnp.zeros((y_NHWC.shape[0], hp, wp, y_NHWC.shape[3]), y_NHWC.dtype)
    for k in range(window[0] * window[1]):
        dy, dx = divmod(k, window[1])
        placed = jnp.where(switches == k, y_NHWC, zero)
        out = out + lax.pad(placed, zero, (
            (0, 0, 0),
            (dy, hp - dy - (ho - 1) * stride[0] - 1, stride[0] - 1),
            (dx, wp - dx - (wo - 1) * stride[1] - 1, stride[1] - 1),
            (0, 0, 0)))
    return out[:, pads[0][0]:pads[0][0] + input_hw[0], pads[1][0]:pads[1][0] + input_hw[1]]


def local_response_norm(x_NHWC, size: int = 5, alpha: float = 1e-4, beta: float = 0.75, k: float = 2.0):
    """Normalization across maps (Krizhevsky et al.; PyTorch's ``LocalResponseNorm``).

    ``y_c = x_c / (k + alpha / size * sum_{c' near c} x_{c'}^2) ** beta``, the window of
    ``size`` maps centred on ``c`` and cut at the ends.
    """
    _array("x", x_NHWC, 4, "NHWC")
    _checks.count("size", size)
    for what, v in (("alpha", alpha), ("beta", beta), ("k", k)):
        if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, float, np.integer, np.floating)) \
                or not math.isfinite(v):
            raise ValueError(f"local response normalization's {what} must be a finite number, got {v!r}")
    sq = lax.reduce_window(
        x_NHWC * x_NHWC, 0.0, lax.add, (1, 1, 1, size), (1, 1, 1, 1),
        ((0, 0), (0, 0), (0, 0), (size // 2, (size - 1) // 2)))
    return x_NHWC / (k + alpha / size * sq) ** beta


def _average_bins(size: int, out: int) -> np.ndarray:
    """``(out, size)`` averaging matrix of PyTorch's adaptive bins: bin ``i`` averages
    ``[floor(i * size / out), ceil((i + 1) * size / out))``; bins overlap and differ in
    length where ``out`` does not divide ``size``, and repeat inputs where ``out > size``."""
    bins = np.zeros((out, size), np.float32)
    for i in range(out):
        start, end = i * size // out, -(-(i + 1) * size // out)
        bins[i, start:end] = 1.0 / (end - start)
    return bins


def adaptive_avg_pool(x_NHWC, output_hw: Pair):
    """PyTorch's ``AdaptiveAvgPool2d``: the mean of each bin of :func:`_average_bins`, for
    any input size, giving maps of ``output_hw``. Linear: its VJP is
    :func:`adaptive_avg_unpool`."""
    _array("x", x_NHWC, 4, "NHWC")
    oh, ow = as_pair("output_hw", output_hw)
    h, w = x_NHWC.shape[1:3]
    if (h, w) == (oh, ow):
        return x_NHWC  # torchvision's default input sizes: exactly the identity, no arithmetic
    rows, cols = (jnp.asarray(_average_bins(n, o), x_NHWC.dtype) for n, o in ((h, oh), (w, ow)))
    return jnp.einsum("ph,nhwc,qw->npqc", rows, x_NHWC, cols, precision=lax.Precision.HIGHEST)


def adaptive_avg_unpool(y_NHWC, input_hw: Pair):
    """The transpose of :func:`adaptive_avg_pool`: each value spread back over its bin,
    divided by the bin's length (where bins overlap, the shares add up)."""
    _array("y", y_NHWC, 4, "NHWC")
    h, w = as_pair("input_hw", input_hw)
    oh, ow = y_NHWC.shape[1:3]
    if (h, w) == (oh, ow):
        return y_NHWC
    rows, cols = (jnp.asarray(_average_bins(n, o), y_NHWC.dtype) for n, o in ((h, oh), (w, ow)))
    return jnp.einsum("ph,npqc,qw->nhwc", rows, y_NHWC, cols, precision=lax.Precision.HIGHEST)


def dense(x_NF, kernel_FO, bias_O=None):
    _array("x", x_NF, 2, "(batch, features)")
    _array("kernel", kernel_FO, 2, "(in, out)")
    if x_NF.shape[1] != kernel_FO.shape[0]:
        raise ValueError(f"kernel of shape {tuple(kernel_FO.shape)} takes {kernel_FO.shape[0]} input features, "
                         f"got x of shape {tuple(x_NF.shape)}")
    _bias(bias_O, kernel_FO.shape[1])
    y = x_NF @ kernel_FO
    return y if bias_O is None else y + bias_O[None]


def flatten(x):
    """Flatten all but the batch axis, in NHWC (row, column, channel) order."""
    if not hasattr(x, "shape") or x.ndim < 2:
        raise ValueError(f"flatten needs a batch of rank >= 2 (N, ...), got shape {np.shape(x)}")
    return x.reshape(x.shape[0], -1)


def dropout(x, rate: float, rng: jax.Array | None, train: bool):
    """Inverted dropout; the identity unless ``train``."""
    if isinstance(rate, (bool, np.bool_)) or not isinstance(rate, (int, float, np.integer, np.floating)) \
            or not 0 <= rate < 1:
        raise ValueError(f"dropout rate must be a number in [0, 1), got {rate!r}")
    if not isinstance(train, (bool, np.bool_)):
        raise ValueError(f"train must be a bool, got {train!r}")
    if not train or rate == 0.0:
        return x
    if rng is None:
        raise ValueError("dropout in training mode needs an rng: pass apply(..., rng=key)")
    _checks.prng_key("dropout's rng", rng)
    keep = jax.random.bernoulli(rng, 1.0 - rate, x.shape)
    return jnp.where(keep, x / (1.0 - rate), jnp.zeros((), x.dtype))
