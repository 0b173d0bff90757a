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


def test_winograd_kernel_needs_3x3():
    with pytest.raises(ValueError, match=r"needs a 3x3 kernel, got shape \(5, 5, 2, 4\)"):
        L.winograd_kernel(jnp.zeros((5, 5, 2, 4)))


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
    with pytest.raises(ValueError, match="needs an rng"):
        L.dropout(x, 0.5, None, train=True)
