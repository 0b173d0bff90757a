"""Every layer kind against itself from two sides: its declared output shape against
its forward op, its deconvnet step down against the VJP of its forward op (with the
deconvnet ReLU), and its param shapes against what its forward op accepts. A new kind
must add a sample here (``SAMPLES`` must cover :data:`jaxvis.kinds.KINDS`)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxvis import kinds, models, rules

# (layer, input shapes without the batch axis)
SAMPLES = {
    "conv": (models.conv("c", 5, 3, stride=2, padding=1, dilation=1, groups=1), [(9, 8, 4)]),
    "relu": (models.relu("r"), [(6, 5, 3)]),
    "max_pool": (models.max_pool("p", 3, 2, padding=1, ceil_mode=True), [(9, 8, 3)]),
    "lrn": (models.lrn("n", size=3), [(5, 4, 6)]),
    "dropout": (models.dropout("d", 0.3), [(5, 4, 3)]),
    "batch_norm": (models.batch_norm("bn", eps=1e-3), [(5, 4, 3)]),
    "add": (models.add("sum", "a", "b", "c"), [(5, 4, 3)] * 3),
    "adaptive_avg_pool": (models.adaptive_avg_pool("a", (3, 2)), [(7, 5, 3)]),
    "global_avg_pool": (models.global_avg_pool("g"), [(5, 4, 3)]),
    "flatten": (models.flatten("f"), [(3, 2, 4)]),
    "dense": (models.dense("fc", 6), [(10,)]),
}
MORE = [(models.conv("c", 6, (3, 2), padding=((2, 0), (1, 1)), dilation=2, groups=3, bias=False), [(9, 8, 6)])]


def test_every_kind_has_a_sample():
    assert sorted(SAMPLES) == sorted(kinds.KINDS)
    assert all(type(layer).kind == kind for kind, (layer, _) in SAMPLES.items())


def params_for(layer, shape, seed=0):
    rng = np.random.default_rng(seed)
    group = {leaf: jnp.asarray(rng.normal(0, 0.5, s), jnp.float32) for leaf, s in layer.param_shapes(shape).items()}
    if "var" in group:
        group["var"] = jnp.asarray(rng.uniform(0.5, 2.0, group["var"].shape), jnp.float32)
    return group or None


CASES = [*SAMPLES.values(), *MORE]


@pytest.mark.parametrize("layer,shapes", CASES, ids=lambda c: c.kind if isinstance(c, kinds.Layer) else "")
def test_forward_gives_the_declared_output_shape(layer, shapes):
    xs = tuple(jax.random.normal(jax.random.key(i), (2, *s)) for i, s in enumerate(shapes))
    y = layer.forward(params_for(layer, shapes[0]), xs, kinds.Run(rules.gradient))
    assert y.shape == (2, *layer.output_shape(*shapes))


@pytest.mark.parametrize("layer,shapes", CASES, ids=lambda c: c.kind if isinstance(c, kinds.Layer) else "")
def test_step_down_is_the_vjp_with_the_deconvnet_relu(layer, shapes):
    params = params_for(layer, shapes[0])
    xs = tuple(jax.random.normal(jax.random.key(i), (2, *s)) for i, s in enumerate(shapes))
    y, pullback = jax.vjp(lambda *v: layer.forward(params, v, kinds.Run(rules.deconvnet)), *xs)
    signal = jax.random.normal(jax.random.key(9), y.shape)
    expected = pullback(signal)
    run = kinds.Run(rules.deconvnet)
    layer.forward(params, xs, run)  # records the switches, as a forward pass's trace holds them
    got = layer.invert(params, signal, xs, run)
    assert len(got) == len(xs)
    for g, e in zip(got, expected):
        assert g.shape == e.shape
        np.testing.assert_allclose(np.asarray(g), np.asarray(e), rtol=1e-5, atol=1e-6)


def test_pointwise_kinds_keep_the_changed_region_and_windows_grow_it():
    start, size = (3, 4), (2, 5)
    for kind in ("relu", "lrn", "dropout", "batch_norm"):
        assert SAMPLES[kind][0].reach((9, 9), start, size) == (start, size)
    (row, col), (h, w) = SAMPLES["conv"][0].reach((5, 4), start, size)
    # 3x3 stride 2, padding 1: rows 3-4 change outputs from ceil((1 + 3 - 2) / 2) = 1, at most
    # ceil((2 + 2) / 2) = 2 of them; columns 4-8 at most ceil((5 + 2) / 2) = 4, all 4 of the map
    assert (int(row), h) == (1, 2) and (int(col), w) == (0, 4)
