"""The zoo against published parameter counts and sizes; geometry against hand and
gradient-support oracles; normalization against hand-written formulas; bad input against
clear errors."""

import dataclasses

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


def flax_forward_init(model, key):
    """Flax's init of the network as jaxvis once was: a Flax module that runs the layers
    and declares each conv or dense layer's kernel (He-normal) and bias (zeros) under the
    layer's name as the forward pass reaches it, shaped by the activation it meets."""
    import flax.linen as nn

    from jaxvis import kinds, rules

    class Weights(nn.Module):
        kernel_shape: tuple

        @nn.compact
        def __call__(self):
            init = nn.initializers.variance_scaling(2.0, "fan_in", "truncated_normal")
            return {"kernel": self.param("kernel", init, self.kernel_shape),
                    "bias": self.param("bias", nn.initializers.zeros, self.kernel_shape[-1:])}

    class Network(nn.Module):
        @nn.compact
        def __call__(self, x):
            for layer in model.layers:
                params = None
                if layer.has_params:
                    fan_in = x.shape[-1]
                    shape = ((*layer.kernel, fan_in // layer.groups, layer.features) if x.ndim == 4
                             else (fan_in, layer.features))
                    params = Weights(shape, name=layer.name)()
                x = layer.forward(params, (x,), kinds.Run(rules.gradient))
            return x

    return Network().init(key, jnp.zeros((1, *model.input_shape)))["params"]


@pytest.mark.parametrize("model", [
    models.mnist_cnn(), models.mnist_cnn(dilation=2, widths=(16, 32), hidden=64),
    models.alexnet(num_classes=10, input_size=99, hidden=64).edit(conv2=dict(groups=2)),  # drawn in several groups
    models.zfnet(num_classes=7, widths=(8, 16, 16, 16, 8), hidden=32),
], ids=lambda m: m.name)
def test_init_draws_what_flax_draws_through_a_forward_pass(model):
    # init declares the weights from the layer tuple and draws similar-sized kernels in one
    # batched call; the values must stay those of Flax's init on a dummy batch, bit for bit
    # (shipped checkpoints and every seeded result depend on them)
    for key in (jax.random.key(3), jax.random.fold_in(jax.random.key(0), 0), jax.random.PRNGKey(5)):
        by_forward_pass = flax_forward_init(model, key)
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


def he_params(model, seed=0):
    """Params shaped as model.param_shapes, drawn with numpy (no init to compile)."""
    rng = np.random.default_rng(seed)
    return {layer: {"kernel": jnp.asarray(rng.normal(0, np.sqrt(2 / np.prod(shapes["kernel"][:-1])), shapes["kernel"]),
                                          jnp.float32),
                    "bias": jnp.asarray(rng.normal(0, 0.1, shapes["bias"]), jnp.float32)}
            for layer, shapes in model.param_shapes.items()}


def test_param_shapes_are_what_flax_declares_in_a_forward_pass():
    for model in (models.build("mnist_cnn"), models.build("vgg16", input_size=(40, 72), hidden=8, num_classes=3),
                  models.alexnet(input_size=(70, 99), hidden=8).edit(conv2=dict(groups=2))):
        declared = jax.eval_shape(lambda key: flax_forward_init(model, key), jax.random.key(0))
        assert {layer: {leaf: s.shape for leaf, s in group.items()} for layer, group in declared.items()} \
            == model.param_shapes
        assert list(declared) == list(model.param_shapes)


@pytest.mark.parametrize("name,size,pool5", [
    ("vgg16", (300, 451), (9, 14)),   # 300 / 32 = 9.4, 451 / 32 = 14.1
    ("vgg19", (32, 95), (1, 2)),      # the smallest height: five 2x2 pools
    ("alexnet", (63, 300), (1, 8)),   # 63: (63 + 4 - 11) / 4 + 1 = 15 -> 7 -> 3 -> 1
])
def test_adaptive_pool_takes_any_input_size_with_the_same_parameters(name, size, pool5):
    default, sized = models.build(name), models.build(name, input_size=size)
    out = 7 if name.startswith("vgg") else 6
    assert sized.shapes["pool5"][:2] == pool5 and sized.shapes["avgpool"][:2] == (out, out)
    assert sized.param_shapes == default.param_shapes and sized.num_params() == default.num_params()
    assert default.with_input_size(size) == sized and sized.with_input_size(224) == default
    assert sized.input_shape == (*size, 3) and sized.name == name
    assert models.build(name, input_size=224) == default == models.build(name, input_size=(224, 224))
    smallest = {"vgg16": 32, "vgg19": 32, "alexnet": 63}[name]
    with pytest.raises(ValueError, match=rf"{name} with input shape \({smallest - 1}, 224, 3\): layer 'pool5'"):
        default.with_input_size((smallest - 1, 224))


def test_adaptive_pool_averages_pytorchs_bins_and_is_the_identity_at_the_default_size():
    # pool5 of 2 x 3 to 7 x 7: bin i covers [floor(2i/7), ceil(2(i+1)/7)) rows, likewise columns
    model = models.build("vgg16", input_size=(64, 96), hidden=8, num_classes=3)
    params = he_params(model)
    x = jax.random.normal(jax.random.key(1), (1, 64, 96, 3))
    _, trace = jax.jit(model.apply)(params, x)
    pool5, avg = np.asarray(trace.activations["pool5"][0]), np.asarray(trace.activations["avgpool"][0])
    row_bins = [[0], [0], [0], [0, 1], [1], [1], [1]]
    col_bins = [[0], [0], [0, 1], [1], [1, 2], [2], [2]]
    for i, j in [(0, 0), (3, 2), (3, 4), (6, 6), (2, 3)]:
        expected = pool5[np.ix_(row_bins[i], col_bins[j])].mean(axis=(0, 1))
        np.testing.assert_allclose(avg[i, j], expected, rtol=1e-6, atol=1e-7)
    alexnet = models.build("alexnet", hidden=8, num_classes=3)  # 224: pool5 is 6 x 6 already
    x = jax.random.normal(jax.random.key(2), (1, 224, 224, 3))
    _, trace = jax.jit(alexnet.apply)(he_params(alexnet), x)
    np.testing.assert_array_equal(np.asarray(trace.activations["avgpool"]), np.asarray(trace.activations["pool5"]))


def test_receptive_fields_stop_before_the_adaptive_pool():
    model = models.build("alexnet")
    assert list(model.fields)[-1] == "pool5" and "avgpool" not in model.fields
    assert model.receptive_field("pool5").size == (195, 195)  # torchvision AlexNet's conv stack
    with pytest.raises(ValueError, match=r"layer 'avgpool' of alexnet comes after the sliding-window layers.*"
                                         r"choose one of \['conv1'"):
        model.receptive_field("avgpool")


def test_apply_checks_params_also_under_jit():
    model = models.build("zfnet", widths=(4, 6, 8, 8, 5), hidden=12, num_classes=7)
    mnist_params = he_params(models.build("mnist_cnn"))
    x = jnp.zeros((1, *model.input_shape))
    for apply in (model.apply, jax.jit(model.apply)):
        with pytest.raises(ValueError) as info:
            apply(mnist_params, x)
        msg = str(info.value)
        assert "params do not fit model zfnet (input shape (224, 224, 3)): 18 problems" in msg
        assert "wrong shape for params['conv1']['kernel']: expected (7, 7, 3, 4), got (3, 3, 1, 32)" in msg
        assert "missing params['conv5']['kernel'] (expected shape (3, 3, 8, 5))" in msg
        assert "unexpected params['fc5']" in msg


def test_normalize_flips_rgb_to_bgr_for_a_bgr_network():
    # caffe's VGG preprocessing, written out: BGR pixels in 0-255 minus the BGR ImageNet mean
    caffe_mean_bgr = np.array([103.939, 116.779, 123.68])
    model = dataclasses.replace(models.build("vgg16", input_size=32, hidden=8, num_classes=3),
                                mean=tuple(caffe_mean_bgr / 255), std=(1 / 255,) * 3, channel_order="BGR")
    pixels = np.random.default_rng(0).integers(0, 256, (2, 4, 5, 3), dtype=np.uint8)
    x = np.asarray(model.normalize(pixels))
    np.testing.assert_allclose(x, pixels[..., ::-1].astype(np.float64) - caffe_mean_bgr, atol=1e-4)
    np.testing.assert_allclose(np.asarray(model.normalize(pixels / np.float32(255))), x, atol=1e-4)
    np.testing.assert_allclose(np.asarray(model.denormalize(x)), pixels / 255, atol=1e-6)
    rgb = dataclasses.replace(model, mean=tuple(caffe_mean_bgr[::-1] / 255), channel_order="RGB")
    np.testing.assert_allclose(np.asarray(rgb.normalize(pixels)), x[..., ::-1], atol=1e-4)


# ---------------------------------------------------------------------------------------
# Bad input: (id, call, what the ValueError must say: expected and given)

MNIST = models.build("mnist_cnn")
PARAMS = {layer: {leaf: np.zeros(shape, np.float32) for leaf, shape in group.items()}
          for layer, group in MNIST.param_shapes.items()}
X = np.zeros((1, 28, 28, 1), np.float32)
VGG = models.build("vgg16", input_size=32, hidden=8, num_classes=3)


def _replace(params, layer, leaf, value):
    return {**params, layer: {**params[layer], leaf: value}}


BAD_INPUTS = [
    # build: names and settings
    ("unknown-model", lambda: models.build("vgg17"), "unknown model 'vgg17'; expected one of ['mnist_cnn', "),
    ("unknown-setting", lambda: models.build("mnist_cnn", dilaton=2),
     "model 'mnist_cnn' has no setting 'dilaton'; its settings are ['dilation', "),
    ("num-classes-float", lambda: models.build("vgg16", num_classes=2.5), "num_classes must be an integer >= 1, "
                                                                          "got 2.5"),
    ("num-classes-bool", lambda: models.build("alexnet", num_classes=True), "num_classes must be an integer >= 1, "
                                                                            "got True"),
    ("hidden-zero", lambda: models.build("zfnet", hidden=0), "hidden must be an integer >= 1, got 0"),
    ("dilation-zero", lambda: models.build("mnist_cnn", dilation=0), "dilation must be an integer >= 1, got 0"),
    ("dilation-too-big", lambda: models.build("mnist_cnn", dilation=7),
     "dilation 7 gives layer 'conv3' an effective kernel of 15, larger than its 14x14 input map"),
    ("widths-count", lambda: models.build("mnist_cnn", widths=(32,)), "widths must be 2 integers >= 1, got (32,)"),
    ("widths-float", lambda: models.build("zfnet", widths=(8, 8, 8, 8, 8.5)), "widths[4] must be an integer >= 1, "
                                                                              "got 8.5"),
    ("input-size-one", lambda: models.build("vgg16", input_size=(300,)),
     "input_size must be an integer or 2 integers >= 1, got (300,)"),
    ("input-size-string", lambda: models.build("alexnet", input_size="224"),
     "input_size must be an integer or 2 integers >= 1, got '224'"),
    ("input-size-small", lambda: models.build("vgg16", input_size=(31, 400)),
     "vgg16 with input shape (31, 400, 3): layer 'pool5': effective kernel 2 (kernel 2, dilation 1) is larger than "
     "its padded input 1"),
    ("channels-zero", lambda: models.build("vgg16", channels=0), "channels must be an integer >= 1, got 0"),
    ("mean-length", lambda: models.build("zfnet", channels=1, mean=(0.1, 0.2), std=(0.3,)),
     "zfnet with 1 input channels needs mean and std with 1 values each"),
    ("std-zero", lambda: models.build("vgg16", std=(0.2, 0.0, 0.2)),
     "std must be 1 or 3 finite numbers > 0 (one per input channel), got (0.2, 0.0, 0.2)"),
    ("mean-nan", lambda: models.build("mnist_cnn", mean=(float("nan"),)),
     "mean must be 1 or 1 finite numbers (one per input channel), got (nan,)"),
    ("input-shape", lambda: models.build("mnist_cnn", input_shape=(28, 28)),
     "input_shape must be 3 integers >= 1 (height, width, channels), got (28, 28)"),
    ("input-shape-float", lambda: models.build("mnist_cnn", input_shape=(28, 28.0, 1)),
     "input_shape's width must be an integer >= 1, got 28.0"),
    # Model and Layer descriptions
    ("channel-order", lambda: dataclasses.replace(VGG, channel_order="BRG"),
     "unknown channel order 'BRG'; expected one of ['RGB', 'BGR']"),
    ("bgr-one-channel", lambda: dataclasses.replace(MNIST, channel_order="BGR"),
     "channel_order 'BGR' needs 3 input channels, got input_shape (28, 28, 1)"),
    ("not-a-layer", lambda: models.Model("m", ("conv",), (8, 8, 1)),
     "layers must be Layer descriptions (jaxvis.models.conv, relu, ...), got str 'conv'"),
    ("layer-kind", lambda: models.Model("m", (models.Layer("pool", "p"),), (8, 8, 1)),
     "unknown layer kind (layer 'p') 'pool'; expected one of ['conv', "),
    ("layer-names", lambda: models.Model("m", (models.relu("r"), models.relu("r")), (8, 8, 1)),
     "layer names must be unique, got duplicates ['r']"),
    ("layer-features-float", lambda: models.conv("c", 2.5), "Conv.features must be an int, got float 2.5"),
    ("layer-groups", lambda: models.Model("m", (models.conv("c", 4, 3, groups=0),), (8, 8, 1)),
     "layer 'c': groups must be >= 1, got 0"),
    ("layer-kernel", lambda: models.Model("m", (models.conv("c", 4, 0),), (8, 8, 1)),
     "layer 'c': kernel must be an integer or 2 integers >= 1, got (0, 0)"),
    ("layer-padding", lambda: models.Model("m", (models.conv("c", 4, 3, padding=-1),), (8, 8, 1)),
     "layer 'c': padding must be ((top, bottom), (left, right)) of integers >= 0, got ((-1, -1), (-1, -1))"),
    ("pool-kernel", lambda: models.Model("m", (models.max_pool("p", 0, stride=1),), (8, 8, 1)),
     "layer 'p': kernel must be an integer or 2 integers >= 1, got (0, 0)"),
    ("dilated-kernel-too-big", lambda: models.Model("tiny", (models.conv("conv", 4, 3, dilation=4),), (8, 8, 1)),
     "layer 'conv': effective kernel 9 (kernel 3, dilation 4) is larger than its padded input 8"),
    ("adaptive-pool-size", lambda: models.Model("m", (models.adaptive_avg_pool("a", 0),), (8, 8, 1)),
     "layer 'a': output_size must be an integer or 2 integers >= 1, got (0, 0)"),
    ("adaptive-pool-after-flatten", lambda: models.Model("m", (models.flatten(), models.adaptive_avg_pool()),
                                                         (8, 8, 1)),
     "layer 'avgpool' (adaptive_avg_pool) needs spatial maps, but its input has shape (64,)"),
    ("dropout-rate", lambda: models.Model("m", (models.dropout("d", 1.5),), (8, 8, 1)),
     "layer 'd': dropout rate must be in [0, 1), got 1.5"),
    # geometry, edits and sizes
    ("with-input-size", lambda: VGG.with_input_size((0, 64)), "input_size must be an integer or 2 integers >= 1, "
                                                              "got (0, 64)"),
    ("receptive-field-dense", lambda: MNIST.receptive_field("fc5"),
     "layer 'fc5' of mnist_cnn has no spatial maps (output shape (128,)); choose one of ['conv1', "),
    ("unknown-layer", lambda: MNIST.layer("conv9"), "unknown layer of mnist_cnn 'conv9'; expected one of ['conv1', "),
    ("edit-field", lambda: MNIST.edit(conv1=dict(kernal=3)), "unknown field of layer 'conv1' 'kernal'"),
    ("edit-value", lambda: MNIST.edit(conv1=dict(stride=0)), "layer 'conv1': stride must be an integer or 2 integers "
                                                              ">= 1, got (0, 0)"),
    ("without-unknown", lambda: MNIST.without("conv7"), "unknown layer of mnist_cnn 'conv7'"),
    # init
    ("init-int-key", lambda: MNIST.init(0), "key must be a JAX PRNG key (jax.random.key(seed) or "
                                            "jax.random.PRNGKey(seed)), got int 0"),
    ("init-array-key", lambda: MNIST.init(np.zeros(3, np.uint32)), "got ndarray of shape (3,), dtype uint32"),
    # apply: images
    ("apply-rank", lambda: MNIST.apply(PARAMS, X[0]), "batch of shape (N, 28, 28, 1) (NHWC), got an array of rank 3"),
    ("apply-channels", lambda: MNIST.apply(PARAMS, np.zeros((2, 28, 28, 3), np.float32)),
     "must have 1 channels (NHWC, channels last), got shape (2, 28, 28, 3) with 3"),
    ("apply-nchw", lambda: MNIST.apply(PARAMS, np.zeros((2, 1, 28, 28), np.float32)), "got shape (2, 1, 28, 28)"),
    ("apply-size", lambda: MNIST.apply(PARAMS, np.zeros((2, 32, 32, 1), np.float32)),
     "must have shape (N, 28, 28, 1), got (2, 32, 32, 1)"),
    ("apply-dtype", lambda: MNIST.apply(PARAMS, X.astype(np.uint8)), "floating point (normalized with "
                                                                     "model.normalize), got dtype uint8"),
    ("apply-non-finite", lambda: MNIST.apply(PARAMS, np.full((2, 28, 28, 1), np.nan, np.float32)),
     "must be finite, got 1568 non-finite values"),
    ("apply-rule", lambda: MNIST.apply(PARAMS, X, rule="deconv"), "unknown rule 'deconv'"),
    ("apply-until", lambda: MNIST.apply(PARAMS, X, until="conv9"), "unknown layer of mnist_cnn 'conv9'"),
    ("apply-rng", lambda: MNIST.apply(PARAMS, X, train=True, rng=3), "rng must be a JAX PRNG key"),
    # apply: params
    ("params-other-model", lambda: VGG.apply(PARAMS, np.zeros((1, 32, 32, 3), np.float32)),
     "42 problems:\n  - missing params['conv1_1']['kernel'] (expected shape (3, 3, 3, 64))"),
    ("params-missing-layer", lambda: MNIST.apply({k: v for k, v in PARAMS.items() if k != "conv3"}, X),
     "2 problems:\n  - missing params['conv3']['kernel'] (expected shape (3, 3, 32, 64))\n"
     "  - missing params['conv3']['bias'] (expected shape (64,))"),
    ("params-extra-layer", lambda: MNIST.apply({**PARAMS, "conv9": PARAMS["conv1"]}, X),
     "unexpected params['conv9']['kernel']"),
    ("params-extra-leaf", lambda: MNIST.apply(_replace(PARAMS, "fc6", "scale", np.ones(10, np.float32)), X),
     "unexpected params['fc6']['scale']"),
    ("params-shape", lambda: MNIST.apply(_replace(PARAMS, "fc5", "kernel", np.zeros((3137, 128), np.float32)), X),
     "wrong shape for params['fc5']['kernel']: expected (3136, 128), got (3137, 128)"),
    ("params-dtype", lambda: MNIST.apply(_replace(PARAMS, "fc6", "bias", np.zeros(10, np.int32)), X),
     "params['fc6']['bias'] must be floating point, got dtype int32"),
    ("params-not-dict", lambda: MNIST.apply([PARAMS], X), "params must be a dict {layer: {'kernel': array, "
                                                          "'bias': array}} for mnist_cnn, got list"),
    ("params-flax-variables", lambda: MNIST.apply({"params": PARAMS}, X),
     "(these are Flax variables: pass variables['params'])"),
    # normalize
    ("normalize-int64", lambda: MNIST.normalize(np.zeros((2, 28, 28, 1), np.int64)),
     "pixels must be uint8 in [0, 255] or floats in [0, 1], got dtype int64"),
    ("normalize-channels", lambda: MNIST.normalize(np.zeros((2, 28, 28, 3), np.float32)),
     "pixels must have 1 channels on their last axis (NHWC) for mnist_cnn, got shape (2, 28, 28, 3)"),
    ("normalize-0-255-floats", lambda: VGG.normalize(np.full((1, 4, 4, 3), 200.0, np.float32)),
     "float pixels must lie in [0, 1] (uint8 pixels in [0, 255]), got values in [200, 200]: divide 0-255 floats "
     "by 255 or pass uint8"),
    ("normalize-normalized", lambda: VGG.normalize(VGG.normalize(np.zeros((1, 4, 4, 3), np.float32))),
     "got values in [-2.118, -1.804]: pass pixels, not inputs normalize already gave"),
    ("normalize-non-finite", lambda: VGG.normalize(np.full((1, 4, 4, 3), np.inf, np.float32)),
     "pixels must be finite, got 48 non-finite values"),
]


@pytest.mark.parametrize("call,message", [c[1:] for c in BAD_INPUTS], ids=[c[0] for c in BAD_INPUTS])
def test_bad_input_raises_value_error_saying_expected_and_given(call, message):
    with pytest.raises(ValueError) as info:
        call()
    assert message in str(info.value)


def test_edits_make_new_tuples_and_recheck_shapes():
    base = models.build("zfnet", input_size=64, widths=(8, 16, 16, 16, 16), hidden=32, num_classes=10)
    alex_like = base.edit(conv1=dict(kernel=11, stride=4, padding=2), conv2=dict(stride=1, padding=2))
    assert alex_like.layer("conv1").kernel == (11, 11) and base.layer("conv1").kernel == (7, 7)
    assert alex_like.shapes["conv1"][:2] == ((64 + 4 - 11) // 4 + 1,) * 2 == (15, 15)
    assert alex_like.shapes["pool2"][:2] == (3, 3) and base.shapes["pool2"][:2] == (3, 3)
    smaller = base.without("conv4", "relu4")
    assert "conv4" not in smaller.names and smaller.num_params() == base.num_params() - (9 * 16 * 16 + 16)
    with pytest.raises(ValueError, match=r"layer 'pool2': effective kernel 3 .* larger than its padded input 2"):
        base.edit(conv1=dict(kernel=11, stride=4, padding=2))  # conv2's stride 2 then leaves a 2x2 map
