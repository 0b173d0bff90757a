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
from jaxvis.project import Select, project, project_explicit, project_strongest


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


def test_bad_selections_are_rejected_clearly():
    model = models.build("mnist_cnn")
    params = model.init(jax.random.key(0))
    x = jnp.zeros((28, 28, 1))
    with pytest.raises(ValueError, match=r"channel of layer 'conv3' out of range: expected 0 <= .* < 64, got \[64\]"):
        project(model, params, x, "conv3", Select.strongest(64))
    with pytest.raises(ValueError, match=r"row of layer 'pool1' out of range.* < 14, got \[14\]"):
        project(model, params, x, "pool1", Select.unit(0, 14, 0))
    with pytest.raises(ValueError, match=r"layer 'fc5' is dense.*only Select.unit"):
        project(model, params, x, "fc5", Select.strongest(0))
    with pytest.raises(ValueError, match=r"one image of shape \(28, 28, 1\).*got shape \(2, 28, 28, 1\)"):
        project(model, params, jnp.zeros((2, 28, 28, 1)), "conv1", Select.strongest(0))
    with pytest.raises(ValueError, match=r"unknown layer of mnist_cnn 'conv5'"):
        project_explicit(model, params, x, "conv5", Select.strongest(0))
    with pytest.raises(ValueError, match=r"image must be finite"):
        project(model, params, x.at[3, 3, 0].set(jnp.inf), "conv1", Select.strongest(0))
    with pytest.raises(ValueError, match=r"row of dense layer 'relu5' out of range: expected 0 <= .* < 1, got \[1\]"):
        project(model, params, x, "relu5", Select.unit(3, 1, 0))
    with pytest.raises(ValueError, match=r"selection's row must be an integer, got dtype float32 value 3.7"):
        Select.unit(2, 3.7, 0)
    with pytest.raises(ValueError, match=r"images must be finite"):
        project_strongest(model, params, x.at[3, 3, 0].set(jnp.nan)[None], "conv2")
    with pytest.raises(ValueError, match=r"images must have 1 channels"):
        project_strongest(model, params, jnp.zeros((2, 28, 28, 3)), "conv2")
