"""Projection to pixel space: the vjp path against the explicit deconvnet and against
hand-composed backward passes."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import rel_err
from jax import lax

from jaxvis import layers as L
from jaxvis import models
from jaxvis.project import (Select, backward_bytes, project, project_batch, project_explicit,
                            project_strongest, strongest_map)


def assert_vjp_equals_explicit_in_every_conv_layer(model):
    params = model.init(jax.random.key(0))
    x = jax.random.normal(jax.random.key(1), model.input_shape)
    convs = [layer.name for layer in model.layers if layer.kind == "conv"]
    for i, layer in enumerate(convs):
        select = Select.strongest(i % model.shapes[layer][-1])
        via_vjp = project(model, params, x, layer, select, rule="deconvnet")
        explicit = project_explicit(model, params, x, layer, select)
        assert np.abs(explicit).max() > 0, f"{layer}: empty projection tests nothing"
        assert rel_err(via_vjp, explicit) <= 1e-5, f"{model.name} {layer}: {rel_err(via_vjp, explicit):.2e}"


def test_vjp_deconvnet_equals_explicit_deconvnet_in_every_conv_layer():
    # zfnet at its Fig. 3 size here; vgg16 and alexnet at 224 in tests/integration
    assert_vjp_equals_explicit_in_every_conv_layer(models.build("zfnet"))


def test_deconvnet_through_dense_and_normalization_layers():
    model = models.build("zfnet", widths=(8, 16, 16, 16, 16), hidden=32, num_classes=5, input_size=64)
    params = model.init(jax.random.key(0))
    x = jax.random.normal(jax.random.key(1), model.input_shape)
    for layer, select in (("norm2", Select.strongest(3)), ("fc8", Select.unit(2))):  # fc8: through every layer
        assert rel_err(project(model, params, x, layer, select), project_explicit(model, params, x, layer, select)) <= 1e-5


def _plain_mnist_forward(params, x, until):
    """mnist_cnn written independently: jax.nn.relu and lax.reduce_window max pooling."""
    for name in ("conv1", "conv2", "pool1", "conv3", "conv4"):
        if name.startswith("pool"):
            x = lax.reduce_window(x, -jnp.inf, lax.max, (1, 2, 2, 1), (1, 2, 2, 1), "VALID")
        else:
            k = params[name]["kernel"]
            x = jax.nn.relu(lax.conv_general_dilated(x, k, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"))
                            + params[name]["bias"].reshape(1, 1, 1, -1))
        if name == until:
            return x


@pytest.mark.parametrize("layer", ["conv3", "conv4"])
def test_gradient_rule_equals_autodiff_of_an_independent_forward(layer):
    model = models.build("mnist_cnn")
    params = model.init(jax.random.key(0))
    x = jax.random.normal(jax.random.key(1), (28, 28, 1))
    row, col = np.unravel_index(int(jnp.argmax(_plain_mnist_forward(params, x[None], layer)[0, :, :, 5])), (14, 14))
    got = project(model, params, x, f"relu{layer[-1]}", Select.unit(5, row, col), rule="gradient")
    unit = lambda v: _plain_mnist_forward(params, v[None], layer)[0, row, col, 5]
    expected = unit(x) * jax.grad(unit)(x)  # the paper keeps the activation's value
    assert float(unit(x)) > 0
    assert rel_err(got, expected) < 1e-5


@pytest.mark.parametrize("rule", ["gradient", "deconvnet", "guided"])
def test_each_rule_composes_as_its_formula(rule):
    # conv1 -> relu -> conv2: R = deconv1(rule(f1, deconv2(signal)))
    tiny = models.Model("tiny", (models.conv("conv1", 4, 3, padding=1), models.relu("relu1"),
                                 models.conv("conv2", 3, 3, stride=2)), (9, 9, 2))
    params = tiny.init(jax.random.key(0))
    x = jax.random.normal(jax.random.key(1), (9, 9, 2))
    f1 = L.conv2d(x[None], params["conv1"]["kernel"], params["conv1"]["bias"], padding=((1, 1), (1, 1)))
    act = L.conv2d(jax.nn.relu(f1), params["conv2"]["kernel"], params["conv2"]["bias"], stride=(2, 2))
    signal = jnp.zeros_like(act).at[0, 1, 2, 1].set(act[0, 1, 2, 1])
    r = L.deconv(signal, params["conv2"]["kernel"], (9, 9), stride=(2, 2))
    r = {"gradient": jnp.where(f1 > 0, r, 0.0), "deconvnet": jnp.maximum(r, 0.0),
         "guided": jnp.where(f1 > 0, jnp.maximum(r, 0.0), 0.0)}[rule]
    expected = L.deconv(r, params["conv1"]["kernel"], (9, 9), padding=((1, 1), (1, 1)))[0]
    got = project(tiny, params, x, "conv2", Select.unit(1, 1, 2), rule=rule)
    assert np.abs(expected).max() > 0
    assert rel_err(got, expected) < 1e-5


def test_vmap_over_selections_and_images_equals_a_loop():
    model = models.build("mnist_cnn")
    params = model.init(jax.random.key(0))
    xs = jax.random.normal(jax.random.key(1), (3, 28, 28, 1))
    channels = jnp.array([0, 7, 31])
    fn = jax.jit(jax.vmap(functools.partial(project, model, params, layer="pool1", rule="deconvnet")))
    batched = fn(xs, select=Select.strongest(channels))
    for i in range(3):
        one = project(model, params, xs[i], "pool1", Select.strongest(int(channels[i])))
        assert rel_err(batched[i], one) < 1e-6


def test_map_projection_below_the_first_relu_is_the_sum_of_unit_projections():
    model = models.build("mnist_cnn")
    params = model.init(jax.random.key(0))
    x = jax.random.normal(jax.random.key(1), (28, 28, 1))
    whole = project(model, params, x, "conv1", Select.map(3))
    rows, cols = jnp.meshgrid(jnp.arange(28), jnp.arange(28), indexing="ij")
    units = jax.vmap(lambda r, c: project(model, params, x, "conv1", Select.unit(3, r, c)))(rows.ravel(), cols.ravel())
    assert rel_err(whole, units.sum(0)) < 1e-5


def test_project_batch_equals_a_loop_of_project():
    model = models.build("mnist_cnn", widths=(4, 8), hidden=8)
    params = model.init(jax.random.key(0))
    xs = jax.random.normal(jax.random.key(1), (3, 28, 28, 1))
    got = project_batch(model, params, xs, "relu3", Select.unit(jnp.array([0, 5, 7]), jnp.array([2, 9, 13]), 4))
    same = project_batch(model, params, xs, "relu3", Select.strongest(6))  # a scalar selection: every image
    for i, (c, r) in enumerate(((0, 2), (5, 9), (7, 13))):
        one = project(model, params, xs[i], "relu3", Select.unit(c, r, 4))
        assert rel_err(got[i], one) < 1e-6, i
        assert rel_err(same[i], project(model, params, xs[i], "relu3", Select.strongest(6))) < 1e-6, i


def test_traced_out_of_range_selections_project_to_nan_not_to_zero():
    # under vmap the indices are traced and cannot be checked: map 99 of 8 must not look like a dead unit
    model = models.build("mnist_cnn", widths=(4, 8), hidden=8)
    params = model.init(jax.random.key(0))
    xs = jax.random.normal(jax.random.key(1), (3, 28, 28, 1))
    got = jax.vmap(lambda xi, c: project(model, params, xi, "relu4", Select.strongest(c)))(xs, jnp.array([1, 99, -1]))
    assert rel_err(got[0], project(model, params, xs[0], "relu4", Select.strongest(1))) < 1e-6
    assert np.isnan(np.asarray(got[1:])).all()
    rows = jax.vmap(lambda r: project(model, params, xs[0], "pool1", Select.unit(2, r, 3)))(jnp.array([13, 14]))
    assert np.isfinite(np.asarray(rows[0])).all() and np.isnan(np.asarray(rows[1])).all()
    explicit = jax.jit(lambda c: project_explicit(model, params, xs[0], "relu4", Select.strongest(c)))
    assert np.isnan(np.asarray(explicit(jnp.int32(8)))).all() and np.isfinite(np.asarray(explicit(jnp.int32(7)))).all()


def test_backward_bytes_hand_counted():
    model = models.build("mnist_cnn", widths=(4, 8), hidden=8)
    # input 784; conv1-relu2 4 x 28*28*4; pool1 14*14*4; conv3-relu4 4 x 14*14*8; pool2, flatten 392 each;
    # fc5, relu5, drop5 8 each; fc6 10: forward kept and the signal down, float32
    assert backward_bytes(model) == 2 * 4 * (784 + 4 * 3136 + 784 + 4 * 1568 + 2 * 392 + 3 * 8 + 10) == 169616
    assert backward_bytes(model, "relu3") == 2 * 4 * (784 + 4 * 3136 + 784 + 2 * 1568) == 137984


M = models.build("mnist_cnn", widths=(4, 8), hidden=8)
P = M.init(jax.random.key(0))
X = jnp.zeros((28, 28, 1))
XS = jnp.zeros((2, 28, 28, 1))
NAN, INF = X.at[3, 4, 0].set(jnp.nan), X.at[0, 0, 0].set(jnp.inf)

BAD_INPUTS = [
    # project: indices, layers, rules, images
    ("project-channel-too-large", lambda: project(M, P, X, "relu4", Select.strongest(8)),
     r"channel of layer 'relu4' out of range: expected 0 <= .* < 8, got \[8\]"),
    ("project-channel-negative", lambda: project(M, P, X, "relu4", Select.map(-1)),
     r"channel of layer 'relu4' out of range: expected 0 <= .* < 8, got \[-1\]"),
    ("project-row-too-large", lambda: project(M, P, X, "pool1", Select.unit(0, 14, 0)),
     r"row of layer 'pool1' out of range: expected 0 <= .* < 14, got \[14\]"),
    ("project-col-too-large", lambda: project(M, P, X, "conv1", Select.unit(0, 0, 28)),
     r"col of layer 'conv1' out of range: expected 0 <= .* < 28, got \[28\]"),
    ("project-col-negative", lambda: project(M, P, X, "conv1", Select.unit(0, 0, -3)),
     r"col of layer 'conv1' out of range: expected 0 <= .* < 28, got \[-3\]"),
    ("project-dense-strongest", lambda: project(M, P, X, "fc5", Select.strongest(0)),
     r"layer 'fc5' is dense \(shape \(8,\)\); only Select.unit\(index\) applies to it"),
    ("project-dense-row", lambda: project(M, P, X, "relu5", Select.unit(3, 1, 0)),
     r"row of dense layer 'relu5' out of range: expected 0 <= .* < 1, got \[1\]"),
    ("project-dense-unit-too-large", lambda: project(M, P, X, "fc6", Select.unit(10)),
     r"channel of layer 'fc6' out of range: expected 0 <= .* < 10, got \[10\]"),
    ("project-batch-given", lambda: project(M, P, XS, "conv1", Select.strongest(0)),
     r"one image of shape \(28, 28, 1\) \(HWC; vmap for a batch\), got shape \(2, 28, 28, 1\)"),
    ("project-flat-image", lambda: project(M, P, jnp.zeros(784), "conv1", Select.strongest(0)),
     r"one image of shape \(28, 28, 1\).*got shape \(784,\)"),
    ("project-three-channels", lambda: project(M, P, jnp.zeros((28, 28, 3)), "conv1", Select.strongest(0)),
     r"image must have 1 channels \(NHWC, channels last\), got shape \(1, 28, 28, 3\) with 3"),
    ("project-wrong-size", lambda: project(M, P, jnp.zeros((27, 28, 1)), "conv1", Select.strongest(0)),
     r"image must have shape \(N, 28, 28, 1\), got \(1, 27, 28, 1\)"),
    ("project-integer-pixels", lambda: project(M, P, jnp.zeros((28, 28, 1), jnp.int32), "conv1", Select.strongest(0)),
     r"image must be floating point \(normalized with model.normalize\), got dtype int32"),
    ("project-nan-pixel", lambda: project(M, P, NAN, "conv1", Select.strongest(0)),
     r"image must be finite, got 1 non-finite values \(first at index \(0, 3, 4, 0\): nan\)"),
    ("project-inf-pixel", lambda: project(M, P, INF, "conv1", Select.strongest(0)),
     r"image must be finite, got 1 non-finite values \(first at index \(0, 0, 0, 0\): inf\)"),
    ("project-unknown-layer", lambda: project(M, P, X, "conv5", Select.strongest(0)),
     r"unknown layer of mnist_cnn 'conv5'; expected one of \[.*'conv4'.*\]. Did you mean"),
    ("project-unknown-rule", lambda: project(M, P, X, "conv1", Select.strongest(0), rule="guidded"),
     r"unknown rule 'guidded'; expected one of \['gradient', 'deconvnet', 'guided'\]. Did you mean 'guided'"),
    ("project-not-a-select", lambda: project(M, P, X, "conv1", 3),
     r"select must be a Select \(Select.unit, .strongest or .map\), got int"),
    ("project-unknown-mode", lambda: project(M, P, X, "conv1", Select("centre", *(jnp.int32(0),) * 3)),
     r"unknown selection mode 'centre'; expected one of \['unit', 'strongest', 'map'\]"),
    # Select
    ("select-float-row", lambda: Select.unit(2, 3.7, 0),
     r"a selection's row must be an integer, got dtype float64 value 3.7"),
    ("select-float-channel-array", lambda: Select.strongest(jnp.array([1.0, 2.0])),
     r"a selection's channel must be an integer, got dtype float32 value \[1.0, 2.0\]"),
    ("select-string-channel", lambda: Select.map("3"), r"a selection's channel must be an integer, got dtype <U1"),
    ("select-bool-channel", lambda: Select.strongest(True), r"a selection's channel must be an integer, got dtype bool"),
    ("select-none-col", lambda: Select.unit(0, 0, None), r"a selection's col must be an integer, got dtype object"),
    ("select-shapes-differ", lambda: Select.unit([0, 1], [0, 1, 2], 0),
     r"channel, row and col must broadcast to one shape, got shapes \[\(2,\), \(3,\), \(\)\]"),
    # project_explicit
    ("explicit-unknown-layer", lambda: project_explicit(M, P, X, "relu9", Select.strongest(0)),
     r"unknown layer of mnist_cnn 'relu9'"),
    ("explicit-channel-too-large", lambda: project_explicit(M, P, X, "conv3", Select.strongest(8)),
     r"channel of layer 'conv3' out of range: expected 0 <= .* < 8, got \[8\]"),
    ("explicit-nan-pixel", lambda: project_explicit(M, P, NAN, "conv3", Select.strongest(0)),
     r"image must be finite, got 1 non-finite"),
    ("explicit-batch-given", lambda: project_explicit(M, P, XS, "conv3", Select.strongest(0)),
     r"one image of shape \(28, 28, 1\).*got shape \(2, 28, 28, 1\)"),
    # project_batch: every value checked before the one vmapped call
    ("batch-channel-99", lambda: project_batch(M, P, XS, "relu4", Select.strongest(jnp.array([1, 99]))),
     r"channel of layer 'relu4' out of range: expected 0 <= .* < 8, got \[99\]"),
    ("batch-row-too-large", lambda: project_batch(M, P, XS, "pool1", Select.unit(0, jnp.array([0, 14]), 0)),
     r"row of layer 'pool1' out of range: expected 0 <= .* < 14, got \[14\]"),
    ("batch-nan-pixel", lambda: project_batch(M, P, XS.at[1, 2, 3, 0].set(jnp.nan), "relu4", Select.strongest(0)),
     r"images must be finite, got 1 non-finite values \(first at index \(1, 2, 3, 0\): nan\)"),
    ("batch-selections-per-image", lambda: project_batch(M, P, XS, "relu4", Select.strongest(jnp.arange(3))),
     r"a batched selection's channel must be a scalar or have shape \(2,\), one per image, got shape \(3,\)"),
    ("batch-selection-matrix", lambda: project_batch(M, P, XS, "relu4", Select.strongest(jnp.zeros((2, 1), int))),
     r"a batched selection's channel must be a scalar or have shape \(2,\).*got shape \(2, 1\)"),
    ("batch-one-image", lambda: project_batch(M, P, X, "relu4", Select.strongest(0)),
     r"images must be a batch of shape \(N, 28, 28, 1\) \(NHWC\), got an array of rank 3"),
    ("batch-empty", lambda: project_batch(M, P, XS[:0], "relu4", Select.strongest(0)),
     r"images must hold at least one image, got shape \(0, 28, 28, 1\)"),
    ("batch-three-channels", lambda: project_batch(M, P, jnp.zeros((2, 28, 28, 3)), "relu4", Select.strongest(0)),
     r"images must have 1 channels \(NHWC, channels last\), got shape \(2, 28, 28, 3\)"),
    ("batch-uint8", lambda: project_batch(M, P, np.zeros((2, 28, 28, 1), np.uint8), "relu4", Select.strongest(0)),
     r"images must be floating point \(normalized with model.normalize\), got dtype uint8"),
    ("batch-unknown-rule", lambda: project_batch(M, P, XS, "relu4", Select.strongest(0), rule="deconv"),
     r"unknown rule 'deconv'; expected one of .*Did you mean 'deconvnet'"),
    ("batch-unknown-layer", lambda: project_batch(M, P, XS, "relu7", Select.strongest(0)),
     r"unknown layer of mnist_cnn 'relu7'"),
    ("batch-dense-map", lambda: project_batch(M, P, XS, "fc5", Select.map(0)),
     r"layer 'fc5' is dense \(shape \(8,\)\); only Select.unit"),
    # project_strongest, strongest_map, backward_bytes
    ("strongest-nan-pixel", lambda: project_strongest(M, P, NAN[None], "conv2"),
     r"images must be finite, got 1 non-finite values"),
    ("strongest-three-channels", lambda: project_strongest(M, P, jnp.zeros((2, 28, 28, 3)), "conv2"),
     r"images must have 1 channels"),
    ("strongest-dense-layer", lambda: project_strongest(M, P, XS, "fc5"),
     r"layer 'fc5' of mnist_cnn has no spatial maps \(output shape \(8,\)\); choose one of"),
    ("strongest-unknown-rule", lambda: project_strongest(M, P, XS, "conv2", rule="guide"),
     r"unknown rule 'guide'.*Did you mean 'guided'"),
    ("strongest-empty", lambda: project_strongest(M, P, XS[:0], "conv2"),
     r"images must hold at least one image, got shape \(0, 28, 28, 1\)"),
    ("strongest-map-batch", lambda: strongest_map(jnp.zeros((2, 4, 4, 3))),
     r"strongest_map takes one image's activations \(H, W, C\), got shape \(2, 4, 4, 3\)"),
    ("backward-bytes-unknown-layer", lambda: backward_bytes(M, "relu8"), r"unknown layer of mnist_cnn 'relu8'"),
]


@pytest.mark.parametrize("call, message", [case[1:] for case in BAD_INPUTS], ids=[case[0] for case in BAD_INPUTS])
def test_bad_input_is_a_value_error_saying_expected_and_given(call, message):
    with pytest.raises(ValueError, match=message):
        call()
