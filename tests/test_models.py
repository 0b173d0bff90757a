"""The zoo against published parameter counts and sizes; geometry against hand and
gradient-support oracles; bad input against clear errors."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxvis import models


@pytest.mark.parametrize("name,count", [
    ("alexnet", 61_100_840), ("vgg16", 138_357_544), ("vgg19", 143_667_240),  # torchvision's
    ("zfnet", 62_357_608),  # Fig. 3: (7*7*3+1)*96 + (5*5*96+1)*256 + ... + (4096+1)*1000
])
def test_parameter_counts_match_references(name, count):
    model = models.build(name)
    assert model.num_params() == count
    assert model.num_params(jax.eval_shape(model.init, jax.random.key(0))) == count


def test_zfnet_map_sizes_follow_fig3():
    shapes = models.build("zfnet").shapes
    got = [shapes[n][:2] for n in ("conv1", "pool1", "conv2", "pool2", "conv3", "conv4", "conv5", "pool5")]
    assert got == [(110, 110), (55, 55), (26, 26), (13, 13), (13, 13), (13, 13), (13, 13), (6, 6)]
    assert [shapes[n][-1] for n in ("conv1", "conv2", "conv3", "conv4", "conv5", "fc6", "fc7", "fc8")] == \
        [96, 256, 384, 384, 256, 4096, 4096, 1000]


def test_receptive_fields_hand_computed():
    zf = models.build("zfnet").fields
    # size_l = size_{l-1} + (k - 1) * jump_{l-1}; start_l = start_{l-1} - pad * jump_{l-1}
    assert (zf["conv1"].size, zf["conv1"].jump, zf["conv1"].start) == ((7, 7), (2, 2), (-1, -1))
    assert (zf["pool1"].size, zf["pool1"].jump) == ((11, 11), (4, 4))
    assert (zf["conv2"].size, zf["conv2"].jump, zf["conv2"].start) == ((27, 27), (8, 8), (-1, -1))
    assert (zf["conv5"].size, zf["conv5"].jump, zf["conv5"].start) == ((139, 139), (16, 16), (-49, -49))
    assert (zf["pool5"].size, zf["pool5"].jump) == ((171, 171), (32, 32))
    vgg = models.build("vgg16").fields
    assert vgg["conv1_2"].size == (5, 5) and vgg["conv3_3"].size == (40, 40) and vgg["conv5_3"].size == (196, 196)
    m = models.build("mnist_cnn", dilation=2).fields
    assert m["conv1"].size == (5, 5) and m["conv2"].size == (9, 9) and m["pool1"].size == (10, 10)
    assert m["conv3"].size == (18, 18) and m["conv4"].size == (26, 26) and m["pool2"].start == (-12, -12)  # -2 -2 (jump 1), -2*2 -2*2 (jump 2)


@pytest.mark.parametrize("dilation", [1, 2, 3])
def test_receptive_field_equals_gradient_support(dilation):
    # With positive weights and inputs every ReLU passes, so the input pixels that reach a
    # conv unit span exactly its receptive field clipped to the image (stacked dilated
    # kernels leave holes inside it, so the test compares bounding boxes).
    model = models.build("mnist_cnn", dilation=dilation)
    params = jax.tree_util.tree_map(jnp.abs, model.init(jax.random.key(0)))
    x = jnp.ones((1, 28, 28, 1))
    units = [(13, 13), (7, 20)] + ([(0, 27)] if dilation == 1 else [])  # (0, 27) is clipped
    for layer, (row, col) in (("conv2", u) for u in units):
        g = jax.grad(lambda v: model.apply(params, v, until=layer)[0][0, row, col, 0])(x)
        top, left, h, w = model.receptive_field(layer).window(row, col)
        rows, cols = np.nonzero(np.asarray(g[0, :, :, 0]))
        assert (rows.min(), rows.max() + 1) == (max(top, 0), min(top + h, 28))
        assert (cols.min(), cols.max() + 1) == (max(left, 0), min(left + w, 28))
        if dilation == 1:
            assert len(rows) == (min(top + h, 28) - max(top, 0)) * (min(left + w, 28) - max(left, 0))


def test_apply_returns_every_activation_and_switch():
    model = models.build("mnist_cnn")
    params = model.init(jax.random.key(0))
    x = jax.random.normal(jax.random.key(1), (3, 28, 28, 1))
    logits, trace = jax.jit(model.apply)(params, x)
    assert logits.shape == (3, 10)
    assert set(trace.activations) == set(model.names)
    assert sorted(trace.switches) == ["pool1", "pool2"]
    for name, act in trace.activations.items():
        assert act.shape == (3, *model.shapes[name])
    np.testing.assert_array_equal(np.asarray(trace.activations["fc6"]), np.asarray(logits))
    # the rule changes only backward passes
    logits_guided, _ = model.apply(params, x, rule="guided")
    np.testing.assert_array_equal(np.asarray(logits_guided), np.asarray(logits))
    head, partial = model.apply(params, x, until="pool1")
    assert head.shape == (3, 14, 14, 32) and list(partial.activations)[-1] == "pool1"


@pytest.mark.parametrize("model", [
    models.mnist_cnn(), models.mnist_cnn(dilation=2, widths=(16, 32), hidden=64),
    models.alexnet(num_classes=10, input_size=99).edit(conv2=dict(groups=2)),  # kernels drawn in several groups
    models.zfnet(num_classes=7, widths=(8, 16, 16, 16, 8), hidden=32),
], ids=lambda m: m.name)
def test_init_draws_what_flax_draws_through_a_forward_pass(model):
    # init declares the weights from the layer tuple and draws similar-sized kernels in one
    # batched call; the values must stay those of Flax's init on a dummy batch, bit for bit
    # (shipped checkpoints and every seeded result depend on them)
    from jaxvis import rules

    for key in (jax.random.key(3), jax.random.fold_in(jax.random.key(0), 0), jax.random.PRNGKey(5)):
        by_forward_pass = model._module.init(key, jnp.zeros((1, *model.input_shape)), rules.gradient, False,
                                             None, None)["params"]
        params = model.init(key)
        assert list(params) == list(by_forward_pass)
        for name in params:
            for leaf in ("kernel", "bias"):
                np.testing.assert_array_equal(np.asarray(params[name][leaf]), np.asarray(by_forward_pass[name][leaf]),
                                              err_msg=f"{name}/{leaf}")
                assert params[name][leaf].dtype == by_forward_pass[name][leaf].dtype


def test_dilation_keeps_shapes_and_parameters():
    base = models.build("mnist_cnn")
    for d in (2, 3, 4):
        m = models.build("mnist_cnn", dilation=d)
        assert m.shapes == base.shapes and m.num_params() == base.num_params()
        assert all(layer.dilation == (d, d) for layer in m.layers if layer.kind == "conv")


def test_normalize_roundtrip():
    model = models.build("alexnet")
    pixels = np.random.default_rng(0).integers(0, 256, (1, 4, 4, 3), dtype=np.uint8)
    x = model.normalize(pixels)
    np.testing.assert_allclose(np.asarray(x[0, 0, 0]), (pixels[0, 0, 0] / 255 - models.IMAGENET_MEAN)
                               / np.array(models.IMAGENET_STD), rtol=1e-5)
    np.testing.assert_allclose(np.asarray(model.denormalize(x)), pixels / 255, atol=1e-6)


@pytest.fixture(scope="module")
def mnist():
    model = models.build("mnist_cnn")
    return model, model.init(jax.random.key(0))


@pytest.mark.parametrize("x,message", [
    (np.zeros((28, 28, 1), np.float32), r"batch of shape \(N, 28, 28, 1\).*rank 3"),
    (np.zeros((2, 28, 28, 3), np.float32), r"1 channels.*got shape \(2, 28, 28, 3\) with 3"),
    (np.zeros((2, 1, 28, 28), np.float32), r"1 channels.*\(2, 1, 28, 28\)"),
    (np.zeros((2, 32, 32, 1), np.float32), r"shape \(N, 28, 28, 1\), got \(2, 32, 32, 1\)"),
    (np.zeros((2, 28, 28, 1), np.uint8), r"floating point.*uint8"),
    (np.full((2, 28, 28, 1), np.nan, np.float32), r"finite.*1568 non-finite"),
])
def test_bad_images_are_rejected_clearly(mnist, x, message):
    model, params = mnist
    with pytest.raises(ValueError, match=message):
        model.apply(params, x)


def test_bad_names_are_rejected_clearly(mnist):
    model, params = mnist
    x = np.zeros((1, 28, 28, 1), np.float32)
    with pytest.raises(ValueError, match=r"unknown model 'vgg17'.*Did you mean 'vgg1"):
        models.build("vgg17")
    with pytest.raises(ValueError, match=r"no setting 'dilaton'.*\['dilation'"):
        models.build("mnist_cnn", dilaton=2)
    with pytest.raises(ValueError, match=r"unknown layer of mnist_cnn 'conv9'"):
        model.apply(params, x, until="conv9")
    with pytest.raises(ValueError, match=r"unknown rule 'deconv'"):
        model.apply(params, x, rule="deconv")
    with pytest.raises(ValueError, match=r"fc5. of mnist_cnn has no spatial maps"):
        model.receptive_field("fc5")


def test_bad_dilation_names_factor_and_layer():
    with pytest.raises(ValueError, match=r"dilation must be an integer >= 1, got 0"):
        models.build("mnist_cnn", dilation=0)
    with pytest.raises(ValueError, match=r"dilation 7 gives layer 'conv3' an effective kernel of 15.*14x14"):
        models.build("mnist_cnn", dilation=7)
    with pytest.raises(ValueError, match=r"layer 'conv': effective kernel 9 \(kernel 3, dilation 4\).*padded input 8"):
        models.Model("tiny", (models.conv("conv", 4, 3, dilation=4),), (8, 8, 1))


@pytest.mark.parametrize("layer,message", [
    (models.conv("c", 4, 3, groups=0), r"layer 'c': groups must be >= 1, got 0"),
    (models.conv("c", 4, 0), r"layer 'c': kernel must be >= 1, got \(0, 0\)"),
    (models.conv("c", 4, 3, padding=-1), r"layer 'c': padding must be >= 0, got \(\(-1, -1\), \(-1, -1\)\)"),
    (models.max_pool("p", 0, stride=1), r"layer 'p': kernel must be >= 1"),
])
def test_bad_layer_definitions_are_rejected_clearly(layer, message):
    with pytest.raises(ValueError, match=message):
        models.Model("tiny", (layer,), (8, 8, 1))


@pytest.mark.parametrize("pixels,message", [
    (np.zeros((2, 28, 28, 1), np.int64), r"uint8 in \[0, 255\] or floats in \[0, 1\], got dtype int64"),
    (np.zeros((2, 28, 28, 3), np.float32), r"1 channels on their last axis.*got shape \(2, 28, 28, 3\)"),
])
def test_normalize_rejects_other_pixels(mnist, pixels, message):
    with pytest.raises(ValueError, match=message):
        mnist[0].normalize(pixels)


def test_edits_make_new_tuples_and_recheck_shapes():
    base = models.build("zfnet", input_size=64, widths=(8, 16, 16, 16, 16), hidden=32, num_classes=10)
    alex_like = base.edit(conv1=dict(kernel=11, stride=4, padding=2), conv2=dict(stride=1, padding=2))
    assert alex_like.layer("conv1").kernel == (11, 11) and base.layer("conv1").kernel == (7, 7)
    assert alex_like.shapes["conv1"][:2] == ((64 + 4 - 11) // 4 + 1,) * 2 == (15, 15)
    assert alex_like.shapes["pool2"][:2] == (3, 3) and base.shapes["pool2"][:2] == (3, 3)
    smaller = base.without("conv4", "relu4")
    assert "conv4" not in smaller.names and smaller.num_params() == base.num_params() - (9 * 16 * 16 + 16)
    with pytest.raises(ValueError, match=r"field of layer 'conv1' 'kernal'"):
        base.edit(conv1=dict(kernal=3))
    with pytest.raises(ValueError, match=r"layer 'pool2': effective kernel 3 .* larger than its padded input 2"):
        base.edit(conv1=dict(kernel=11, stride=4, padding=2))  # conv2's stride 2 then leaves a 2x2 map
