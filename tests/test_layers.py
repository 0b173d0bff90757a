"""Forward ops against NumPy loops; inverse ops against their definitions."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import rel_err

from jaxvis import layers as L


def conv_loop(x, k, b, stride, pad, dil, groups):
    """Direct cross-correlation, one output value at a time."""
    n, h, w, cin = x.shape
    kh, kw, cin_g, cout = k.shape
    xp = np.pad(x, ((0, 0), pad[0], pad[1], (0, 0)))
    ho = (xp.shape[1] - (kh - 1) * dil[0] - 1) // stride[0] + 1
    wo = (xp.shape[2] - (kw - 1) * dil[1] - 1) // stride[1] + 1
    out = np.zeros((n, ho, wo, cout))
    cout_g = cout // groups
    for i, j, o in itertools.product(range(ho), range(wo), range(cout)):
        g = o // cout_g
        rows = i * stride[0] + dil[0] * np.arange(kh)
        cols = j * stride[1] + dil[1] * np.arange(kw)
        patch = xp[:, rows][:, :, cols][..., g * cin_g:(g + 1) * cin_g]
        out[:, i, j, o] = np.einsum("nhwc,hwc->n", patch, k[..., o]) + b[o]
    return out


CONV_CASES = [  # stride, padding, dilation, groups
    ((1, 1), ((0, 0), (0, 0)), (1, 1), 1),
    ((2, 2), ((1, 1), (1, 1)), (1, 1), 1),
    ((2, 1), ((2, 1), (0, 2)), (2, 3), 1),
    ((1, 1), ((1, 1), (1, 1)), (1, 1), 2),
    ((3, 2), ((1, 0), (2, 1)), (2, 1), 2),
]


@pytest.mark.parametrize("stride,pad,dil,groups", CONV_CASES)
def test_conv2d_matches_loop(rng, stride, pad, dil, groups):
    x = rng.normal(size=(2, 11, 10, 4)).astype(np.float32)
    k = rng.normal(size=(3, 2, 4 // groups, 6)).astype(np.float32)
    b = rng.normal(size=(6,)).astype(np.float32)
    got = jax.jit(L.conv2d, static_argnums=(3, 4, 5, 6))(x, k, b, stride, pad, dil, groups)
    assert rel_err(got, conv_loop(x, k, b, stride, pad, dil, groups)) < 1e-5


@pytest.mark.parametrize("shape", [(2, 11, 10, 4, 6), (1, 4, 4, 3, 2), (3, 9, 16, 72, 8), (1, 3, 5, 1, 1)])
def test_winograd_conv_matches_loop(rng, shape):
    # odd and even output sizes (tiles cut at the edge), one output row, many channels
    n, h, w, cin, cout = shape
    x = rng.normal(size=(n, h, w, cin)).astype(np.float32)
    k = rng.normal(size=(3, 3, cin, cout)).astype(np.float32)
    got = jax.jit(L.winograd_conv)(x, L.winograd_kernel(k))
    assert got.shape == (n, h - 2, w - 2, cout)
    assert rel_err(got, conv_loop(x, k, np.zeros(cout), (1, 1), ((0, 0), (0, 0)), (1, 1), 1)) < 1e-5


@pytest.mark.parametrize("stride,pad,dil,groups", CONV_CASES)
def test_deconv_is_the_adjoint_of_conv(rng, stride, pad, dil, groups):
    # <conv(x), y> == <x, deconv(y)> for every x, y defines the transposed filter.
    x = rng.normal(size=(2, 11, 10, 4)).astype(np.float32)
    k = rng.normal(size=(3, 2, 4 // groups, 6)).astype(np.float32)
    y = rng.normal(size=np.shape(L.conv2d(x, k, None, stride, pad, dil, groups))).astype(np.float32)
    lhs = np.vdot(np.asarray(L.conv2d(x, k, None, stride, pad, dil, groups), np.float64), y)
    back = L.deconv(y, k, (11, 10), stride, pad, dil, groups)
    assert back.shape == x.shape
    rhs = np.vdot(x, np.asarray(back, np.float64))
    assert abs(lhs - rhs) / abs(lhs) < 1e-5


def test_transpose_kernel_flips_and_swaps(rng):
    k = rng.normal(size=(3, 2, 4, 5)).astype(np.float32)
    t = np.asarray(L.transpose_kernel(k))
    np.testing.assert_array_equal(t, np.transpose(k, (0, 1, 3, 2))[::-1, ::-1])


def pool_loop(x, window, stride, pad, ceil_mode):
    n, h, w, c = x.shape
    ho = L.pool_output_size(h, window[0], stride[0], pad[0], ceil_mode)
    wo = L.pool_output_size(w, window[1], stride[1], pad[1], ceil_mode)
    y = np.zeros((n, ho, wo, c), x.dtype)
    sw = np.zeros((n, ho, wo, c), np.int32)
    for b, i, j, ch in itertools.product(range(n), range(ho), range(wo), range(c)):
        best, arg = -np.inf, -1
        for dy, dx in itertools.product(range(window[0]), range(window[1])):
            r, q = i * stride[0] + dy - pad[0][0], j * stride[1] + dx - pad[1][0]
            if 0 <= r < h and 0 <= q < w and x[b, r, q, ch] > best:  # strict: first max wins
                best, arg = x[b, r, q, ch], dy * window[1] + dx
        y[b, i, j, ch], sw[b, i, j, ch] = best, arg
    return y, sw


POOL_CASES = [  # window, stride, padding, ceil_mode, input size
    ((2, 2), (2, 2), ((0, 0), (0, 0)), False, (8, 8)),
    ((3, 3), (2, 2), ((0, 0), (0, 0)), False, (9, 8)),
    ((3, 3), (2, 2), ((0, 0), (0, 0)), True, (10, 10)),
    ((3, 2), (1, 2), ((1, 1), (0, 1)), False, (7, 6)),
]


@pytest.mark.parametrize("window,stride,pad,ceil_mode,hw", POOL_CASES)
def test_max_pool_values_and_switches_match_loop(rng, window, stride, pad, ceil_mode, hw):
    x = rng.normal(size=(2, *hw, 3)).astype(np.float32)
    x[0, :4, :4, 0] = 0.0  # ties: the first maximum in row-major order must win
    y, sw = L.max_pool(x, window, stride, pad, ceil_mode)
    y_ref, sw_ref = pool_loop(x, window, stride, pad, ceil_mode)
    np.testing.assert_array_equal(np.asarray(y), y_ref)
    np.testing.assert_array_equal(np.asarray(sw), sw_ref)


@pytest.mark.parametrize("window,stride,pad,ceil_mode,hw", POOL_CASES)
def test_unpool_places_values_at_switches(rng, window, stride, pad, ceil_mode, hw):
    x = rng.normal(size=(1, *hw, 2)).astype(np.float32)
    _, sw = L.max_pool(x, window, stride, pad, ceil_mode)
    v = rng.normal(size=sw.shape).astype(np.float32)
    expected = np.zeros_like(x)
    for b, i, j, c in itertools.product(*map(range, sw.shape)):
        dy, dx = divmod(int(sw[b, i, j, c]), window[1])
        expected[b, i * stride[0] + dy - pad[0][0], j * stride[1] + dx - pad[1][0], c] += v[b, i, j, c]
    got = L.unpool(v, sw, hw, window, stride, pad, ceil_mode)
    assert rel_err(got, expected) < 1e-6


def test_max_pool_vjp_routes_through_switches_on_ties():
    # jnp.max would split the signal among tied maxima; the deconvnet needs the switch.
    x = jnp.zeros((1, 4, 4, 1))
    _, pullback = jax.vjp(lambda v: L.max_pool(v, (2, 2), (2, 2))[0], x)
    (g,) = pullback(jnp.ones((1, 2, 2, 1)))
    expected = np.zeros((4, 4))
    expected[::2, ::2] = 1.0
    np.testing.assert_array_equal(np.asarray(g)[0, :, :, 0], expected)


def test_local_response_norm_matches_formula(rng):
    x = rng.normal(size=(2, 3, 3, 7)).astype(np.float32)
    size, alpha, beta, k = 5, 1e-2, 0.75, 2.0
    expected = np.empty_like(x)
    for c in range(7):
        lo, hi = max(0, c - size // 2), min(7, c + (size - 1) // 2 + 1)
        expected[..., c] = x[..., c] / (k + alpha / size * (x[..., lo:hi] ** 2).sum(-1)) ** beta
    assert rel_err(L.local_response_norm(x, size, alpha, beta, k), expected) < 1e-6


def test_unrelu_and_relu():
    v = np.array([-2.0, -0.0, 0.5, 3.0], np.float32)
    np.testing.assert_array_equal(np.asarray(L.unrelu(v)), [0, 0, 0.5, 3])
    np.testing.assert_array_equal(np.asarray(L.relu(v)), [0, 0, 0.5, 3])


def test_dense_and_flatten_order(rng):
    x = rng.normal(size=(2, 2, 3, 4)).astype(np.float32)
    flat = np.asarray(L.flatten(x))
    assert flat[1, (1 * 3 + 2) * 4 + 3] == x[1, 1, 2, 3]  # (row, column, channel) order
    k = rng.normal(size=(24, 5)).astype(np.float32)
    b = rng.normal(size=(5,)).astype(np.float32)
    assert rel_err(L.dense(flat, k, b), flat.astype(np.float64) @ k + b) < 1e-6


def test_dropout_keeps_expectation_and_is_identity_at_eval():
    x = jnp.ones((1, 100_000))
    np.testing.assert_array_equal(np.asarray(L.dropout(x, 0.5, None, train=False)), np.asarray(x))
    y = np.asarray(L.dropout(x, 0.5, jax.random.key(0), train=True))
    assert set(np.unique(y)) == {0.0, 2.0}
    assert abs(y.mean() - 1.0) < 0.02


def adaptive_pool_loop(x, out_hw):
    """PyTorch's AdaptiveAvgPool2d, bin by bin: rows floor(i*H/out) to ceil((i+1)*H/out)."""
    n, h, w, c = x.shape
    y = np.zeros((n, *out_hw, c))
    for i, j in itertools.product(range(out_hw[0]), range(out_hw[1])):
        r0, r1 = (i * h) // out_hw[0], -(-((i + 1) * h) // out_hw[0])
        c0, c1 = (j * w) // out_hw[1], -(-((j + 1) * w) // out_hw[1])
        y[:, i, j] = x[:, r0:r1, c0:c1].astype(np.float64).mean(axis=(1, 2))
    return y


ADAPTIVE_CASES = [  # input (h, w), output (h, w)
    ((10, 9), (7, 7)),   # overlapping bins of lengths 2 and 3 (VGG16 at 320x288)
    ((2, 3), (7, 7)),    # fewer inputs than bins: inputs repeat (VGG16 at 64x96)
    ((13, 4), (6, 2)),   # uneven bins without overlap along columns
    ((6, 6), (6, 6)),    # AlexNet at 224: the identity
]


@pytest.mark.parametrize("hw,out", ADAPTIVE_CASES)
def test_adaptive_avg_pool_matches_loop(rng, hw, out):
    x = rng.normal(size=(2, *hw, 3)).astype(np.float32)
    got = jax.jit(L.adaptive_avg_pool, static_argnums=1)(x, out)
    assert got.shape == (2, *out, 3)
    assert rel_err(got, adaptive_pool_loop(x, out)) < 1e-6
    if hw == out:
        np.testing.assert_array_equal(np.asarray(got), x)


@pytest.mark.parametrize("hw,out", ADAPTIVE_CASES)
def test_adaptive_avg_unpool_is_the_adjoint_and_the_vjp(rng, hw, out):
    # <pool(x), y> == <x, unpool(y)>, with the pool from the loop above
    x = rng.normal(size=(2, *hw, 3)).astype(np.float32)
    y = rng.normal(size=(2, *out, 3)).astype(np.float32)
    back = L.adaptive_avg_unpool(y, hw)
    assert back.shape == x.shape
    lhs, rhs = np.vdot(adaptive_pool_loop(x, out), y), np.vdot(x, np.asarray(back, np.float64))
    assert abs(lhs - rhs) / abs(lhs) < 1e-6
    (vjp,) = jax.vjp(lambda v: L.adaptive_avg_pool(v, out), x)[1](y)
    assert rel_err(vjp, back) < 1e-6


# ---------------------------------------------------------------------------------------
# Bad input: (id, call, what the ValueError must say: expected and given)

X = np.zeros((1, 5, 5, 2), np.float32)
K = np.zeros((3, 3, 2, 4), np.float32)
Y = np.zeros((1, 3, 3, 4), np.float32)
KEY = jax.random.key(0)

BAD_INPUTS = [
    ("conv2d-rank", lambda: L.conv2d(X[0], K), "x must have rank 4 (NHWC), got shape (5, 5, 2)"),
    ("conv2d-kernel-rank", lambda: L.conv2d(X, K[0]), "kernel must have rank 4 (HWIO: height, width, in/groups, "
                                                       "out), got shape (3, 2, 4)"),
    ("conv2d-channels", lambda: L.conv2d(np.zeros((1, 5, 5, 3), np.float32), K),
     "takes 2 input channels (and out channels divisible by groups), got x of shape (1, 5, 5, 3) with 3"),
    ("conv2d-dtype", lambda: L.conv2d(X.astype(np.int32), K), "x must be floating point, got dtype int32"),
    ("conv2d-not-array", lambda: L.conv2d([[1.0]], K), "x must be an array of rank 4 (NHWC), got list"),
    ("conv2d-bias", lambda: L.conv2d(X, K, np.zeros(3, np.float32)), "bias must have shape (4,), one per output "
                                                                      "feature, got (3,)"),
    ("conv2d-stride", lambda: L.conv2d(X, K, stride=0), "stride must be an integer or 2 integers >= 1, got 0"),
    ("conv2d-stride-float", lambda: L.conv2d(X, K, stride=(1.5, 1)), "got (1.5, 1)"),
    ("conv2d-dilation", lambda: L.conv2d(X, K, dilation=(1, 1, 1)), "dilation must be an integer or 2 integers "
                                                                     ">= 1, got (1, 1, 1)"),
    ("conv2d-groups", lambda: L.conv2d(X, K, groups=0), "groups must be an integer >= 1, got 0"),
    ("conv2d-groups-channels", lambda: L.conv2d(X, K, groups=2), "with groups=2 takes 4 input channels"),
    ("conv2d-kernel-too-big", lambda: L.conv2d(X, np.zeros((7, 3, 2, 4), np.float32)),
     "effective kernel 7 (kernel 7, dilation 1) is larger than the padded input 5 along rows"),
    ("conv2d-padding", lambda: L.conv2d(X, K, padding=1), "padding must be ((top, bottom), (left, right)) of "
                                                          "integers, got 1"),
    ("deconv-shape", lambda: L.deconv(np.zeros((1, 4, 4, 4), np.float32), K, (5, 5)),
     "y must have the shape (1, 3, 3, 4) of the convolution's output for an input of 5x5 pixels, got (1, 4, 4, 4)"),
    ("deconv-input-hw", lambda: L.deconv(Y, K, (0, 5)), "input_hw must be an integer or 2 integers >= 1, got (0, 5)"),
    ("deconv-rank", lambda: L.deconv(Y[0], K, (5, 5)), "y must have rank 4 (NHWC), got shape (3, 3, 4)"),
    ("transpose-kernel-groups", lambda: L.transpose_kernel(K, 3), "kernel's 4 output channels must divide by "
                                                                   "groups=3"),
    ("transpose-kernel-rank", lambda: L.transpose_kernel(K[0]), "kernel must have rank 4 (HWIO), got shape (3, 2, 4)"),
    ("winograd-kernel-size", lambda: L.winograd_kernel(np.zeros((5, 5, 2, 4), np.float32)),
     "needs a 3x3 kernel, got shape (5, 5, 2, 4)"),
    ("winograd-conv-channels", lambda: L.winograd_conv(X, np.zeros((16, 3, 4), np.float32)),
     "with the kernel's 3 input channels and u of shape (16, in, out), got x (1, 5, 5, 2), u (16, 3, 4)"),
    ("max-pool-window", lambda: L.max_pool(X, (7, 7), (1, 1)), "pooling window 7 is larger than the padded "
                                                               "input 5 (size 5, padding (0, 0))"),
    ("max-pool-padding", lambda: L.max_pool(X, (2, 2), (2, 2), ((-1, 0), (0, 0))),
     "padding must be ((top, bottom), (left, right)) of integers >= 0, got ((-1, 0), (0, 0))"),
    ("max-pool-ceil-mode", lambda: L.max_pool(X, (2, 2), (2, 2), ceil_mode="yes"), "ceil_mode must be a bool, "
                                                                                    "got 'yes'"),
    ("max-pool-stride", lambda: L.max_pool(X, (2, 2), 0), "stride must be an integer or 2 integers >= 1, got 0"),
    ("unpool-shape", lambda: L.unpool(Y, np.zeros((1, 3, 3, 4), np.int32), (5, 5), (2, 2), (2, 2)),
     "y and switches must both have the pooled shape (N, 2, 2, C) of an input of 5x5 pixels, got y (1, 3, 3, 4)"),
    ("unpool-switch-dtype", lambda: L.unpool(Y, Y, (6, 6), (2, 2), (2, 2)),
     "switches must be integer window indices (from max_pool), got dtype float32"),
    ("pool-output-size", lambda: L.pool_output_size(4, 0, 1, (0, 0), False), "window must be an integer >= 1, got 0"),
    ("pool-output-size-float", lambda: L.pool_output_size(4.5, 2, 1, (0, 0), False),
     "size must be an integer >= 1, got 4.5"),
    ("lrn-rank", lambda: L.local_response_norm(X[0]), "x must have rank 4 (NHWC), got shape (5, 5, 2)"),
    ("lrn-size", lambda: L.local_response_norm(X, size=0), "size must be an integer >= 1, got 0"),
    ("lrn-alpha", lambda: L.local_response_norm(X, alpha=float("nan")), "alpha must be a finite number, got nan"),
    ("adaptive-pool-output", lambda: L.adaptive_avg_pool(X, (0, 7)), "output_hw must be an integer or 2 integers "
                                                                     ">= 1, got (0, 7)"),
    ("adaptive-pool-rank", lambda: L.adaptive_avg_pool(X[0], 7), "x must have rank 4 (NHWC), got shape (5, 5, 2)"),
    ("adaptive-pool-dtype", lambda: L.adaptive_avg_pool(X.astype(np.uint8), 7),
     "x must be floating point, got dtype uint8"),
    ("adaptive-unpool-size", lambda: L.adaptive_avg_unpool(Y, (5, -1)), "input_hw must be an integer or 2 "
                                                                        "integers >= 1, got (5, -1)"),
    ("dense-features", lambda: L.dense(np.zeros((2, 5), np.float32), np.zeros((6, 3), np.float32)),
     "kernel of shape (6, 3) takes 6 input features, got x of shape (2, 5)"),
    ("dense-rank", lambda: L.dense(X, np.zeros((6, 3), np.float32)), "x must have rank 2 ((batch, features)), "
                                                                     "got shape (1, 5, 5, 2)"),
    ("dense-bias", lambda: L.dense(np.zeros((2, 6), np.float32), np.zeros((6, 3), np.float32),
                                   np.zeros((2, 3), np.float32)), "bias must have shape (3,), one per output "
                                                                  "feature, got (2, 3)"),
    ("flatten-rank", lambda: L.flatten(np.zeros(3, np.float32)), "flatten needs a batch of rank >= 2 (N, ...), "
                                                                 "got shape (3,)"),
    ("dropout-rate", lambda: L.dropout(X, 1.0, KEY, True), "dropout rate must be a number in [0, 1), got 1.0"),
    ("dropout-rate-type", lambda: L.dropout(X, "0.5", KEY, True), "dropout rate must be a number in [0, 1), "
                                                                   "got '0.5'"),
    ("dropout-train", lambda: L.dropout(X, 0.5, KEY, "yes"), "train must be a bool, got 'yes'"),
    ("dropout-rng", lambda: L.dropout(X, 0.5, 7, True), "dropout's rng must be a JAX PRNG key"),
    ("dropout-no-rng", lambda: L.dropout(X, 0.5, None, True), "dropout in training mode needs an rng"),
]


@pytest.mark.parametrize("call,message", [c[1:] for c in BAD_INPUTS], ids=[c[0] for c in BAD_INPUTS])
def test_bad_input_raises_value_error_saying_expected_and_given(call, message):
    with pytest.raises(ValueError) as info:
        call()
    assert message in str(info.value)
