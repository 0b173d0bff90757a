"""Graphs of layers, batch norm and the ResNets: counts against torchvision's published
numbers, batch norm against its formula in numpy, receptive fields over an addition
against the gradient's support, the explicit deconvnet against the vjp path across
additions, weight files in torchvision's names, and bad graphs against clear errors."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxvis import kinds, models, occlusion, train, weights
from jaxvis.project import Select, project, project_explicit

SMALL = models.resnet18(num_classes=5, input_size=32, width=4)


def rel(a, b) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-30))


def random_params(model, seed=0):
    """Params of ``model.param_shapes`` drawn with numpy, batch norm's statistics positive."""
    rng = np.random.default_rng(seed)
    params = {}
    for layer, group in model.param_shapes.items():
        params[layer] = {}
        for leaf, shape in group.items():
            scale = np.sqrt(2 / np.prod(shape[:-1])) if leaf == "kernel" else 0.3
            value = rng.normal(0, scale, shape)
            if leaf == "var":
                value = rng.uniform(0.5, 2.0, shape)
            elif leaf == "scale":
                value = rng.uniform(0.5, 1.5, shape)
            params[layer][leaf] = jnp.asarray(value, jnp.float32)
    return params


@pytest.mark.parametrize("name,count", [("resnet18", 11_689_512), ("resnet50", 25_557_032),
                                        ("vgg16_bn", 138_365_992)])  # torchvision's
def test_parameter_counts_match_torchvision(name, count):
    model = models.build(name)
    assert model.num_params() == count
    assert model.num_params(jax.eval_shape(model.init, jax.random.key(0))) == count


@pytest.mark.parametrize("name,keys", [("resnet18", 122), ("resnet50", 320)])
def test_torchvision_names_and_shapes(name, keys):
    # torchvision's state dicts: 122 and 320 entries, num_batches_tracked included
    shapes = weights.torchvision_shapes(models.build(name))
    assert len(shapes) == keys
    assert shapes["conv1.weight"] == (64, 3, 7, 7) and shapes["bn1.num_batches_tracked"] == ()
    assert shapes["layer1.0.bn1.running_mean"] == (64,)
    if name == "resnet18":
        assert shapes["layer1.0.conv1.weight"] == (64, 64, 3, 3)
        assert shapes["layer2.0.downsample.0.weight"] == (128, 64, 1, 1) and "layer1.0.downsample.0.weight" not in shapes
        assert shapes["fc.weight"] == (1000, 512)
    else:
        assert shapes["layer1.0.conv3.weight"] == (256, 64, 1, 1)
        assert shapes["layer1.0.downsample.0.weight"] == (256, 64, 1, 1)
        assert shapes["layer4.2.conv2.weight"] == (512, 512, 3, 3) and shapes["fc.weight"] == (1000, 2048)
    assert models.build(name).shapes["layer4.1.relu"] == (7, 7, 512 if name == "resnet18" else 2048)


def test_vgg16_bn_names_follow_torchvision():
    shapes = weights.torchvision_shapes(models.build("vgg16_bn", input_size=32))
    assert shapes["features.0.weight"] == (64, 3, 3, 3) and shapes["features.1.running_var"] == (64,)
    assert shapes["features.41.weight"] == (512,) and shapes["classifier.0.weight"] == (4096, 25088)


def test_batch_norm_at_inference_and_in_training_against_numpy():
    model = models.Model("bn", (models.conv("c", 6, 3), models.batch_norm("bn", eps=1e-3, momentum=0.2)),
                         (7, 5, 2))
    params = random_params(model)
    x = jax.random.normal(jax.random.key(0), (4, 7, 5, 2))
    c = np.asarray(model.apply(params, x, until="c")[0], np.float64)
    p = {k: np.asarray(v, np.float64) for k, v in params["bn"].items()}
    y, trace = model.apply(params, x)
    np.testing.assert_allclose(y, (c - p["mean"]) / np.sqrt(p["var"] + 1e-3) * p["scale"] + p["bias"], rtol=1e-5,
                               atol=1e-5)
    assert trace.state == {}
    y, trace = model.apply(params, x, train=True)
    mean, var = c.mean((0, 1, 2)), c.var((0, 1, 2))
    np.testing.assert_allclose(y, (c - mean) / np.sqrt(var + 1e-3) * p["scale"] + p["bias"], rtol=1e-4, atol=1e-4)
    n = 4 * 5 * 3
    np.testing.assert_allclose(trace.state["bn"]["mean"], 0.8 * p["mean"] + 0.2 * mean, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(trace.state["bn"]["var"], 0.8 * p["var"] + 0.2 * var * n / (n - 1), rtol=1e-5)


def test_training_step_writes_the_running_statistics_back():
    model = models.Model("block", (
        models.conv("conv1", 4, 3, padding=1, bias=False), models.batch_norm("bn1"), models.relu("relu1"),
        models.conv("conv2", 4, 3, padding=1, bias=False), models.batch_norm("bn2"), models.add("add", "bn2", "relu1"),
        models.relu("relu"), models.global_avg_pool(), models.dense("fc", 5)), (12, 12, 3))
    params = random_params(model)
    images = jax.random.uniform(jax.random.key(1), (3, 12, 12, 3))
    labels = jnp.array([0, 3, 4])
    tx = optax.sgd(0.0)  # learning rate 0: only the statistics move
    state, _ = jax.jit(train._make_update(model, tx, None))(
        {"step": jnp.zeros((), jnp.int32), "params": params, "opt_state": tx.init(params)}, images, labels,
        jax.random.key(2))
    _, trace = model.apply(params, model.normalize(images), train=True)
    for layer, group in model.param_shapes.items():
        for leaf in group:
            expected = trace.state[layer][leaf] if leaf in ("mean", "var") else params[layer][leaf]
            np.testing.assert_allclose(state["params"][layer][leaf], expected, rtol=1e-5, atol=1e-7,
                                       err_msg=f"{layer}/{leaf}")
    assert rel(state["params"]["bn1"]["mean"], params["bn1"]["mean"]) > 0.01  # they did move


def branches(b, s):
    """Two branches from ``relu_a``, then their sum."""
    return models.Model("branches", (
        models.conv("a", 2, 3, padding=1), models.relu("relu_a"), b, s,
        models.add("sum", "b", "s"), models.relu("out"), models.flatten(), models.dense("fc", 3)), (16, 16, 1))


def test_field_of_an_addition_is_the_union_and_equals_the_gradients_support():
    # 3x3 branches padded on opposite sides: fields [i - 1, i + 4) and [i - 3, i + 2)
    model = branches(models.conv("b", 2, 3, padding=((0, 2), (0, 2))),
                     models.conv("s", 2, 3, padding=((2, 0), (2, 0)), inputs=("relu_a",)))
    field = model.receptive_field("sum")
    assert (field.size, field.jump, field.start) == ((7, 7), (1, 1), (-3, -3))  # a's 3x3 widens both by 1
    params = jax.tree.map(jnp.abs, random_params(model))
    for row, col in ((8, 8), (5, 11)):
        g = jax.grad(lambda v: model.apply(params, v, until="out")[0][0, row, col, 0])(jnp.ones((1, 16, 16, 1)))
        rows, cols = np.nonzero(np.asarray(g[0, :, :, 0]))
        top, left, h, w = field.window(row, col)
        assert (rows.min(), rows.max() + 1, cols.min(), cols.max() + 1) == (top, top + h, left, left + w)


def test_an_addition_of_other_jumps_has_no_field():
    model = branches(models.conv("b", 2, 2, stride=2), models.conv("s", 2, 9, inputs=("relu_a",)))  # jumps 2, 1
    assert model.shapes["b"] == model.shapes["s"] == (8, 8, 2)
    assert "b" in model.fields and "s" in model.fields and "sum" not in model.fields and "out" not in model.fields


def test_resnet_fields_follow_the_main_branch():
    fields = models.build("resnet18").fields
    # conv1 7x7/2, maxpool 3x3/2: 11 pixels, jump 4; layer1.0's two 3x3 convolutions add 2 * 2 * 4
    assert (fields["maxpool"].size, fields["maxpool"].jump) == ((11, 11), (4, 4))
    assert (fields["layer1.0.relu"].size, fields["layer1.0.relu"].start) == ((27, 27), (-13, -13))
    assert fields["layer4.1.relu"].jump == (32, 32) and "avgpool" not in fields


@pytest.mark.parametrize("layer,channel", [("layer2.0.relu", 7), ("layer2.0.add", 1)])  # both shortcuts below
def test_explicit_deconvnet_splits_at_additions_as_the_vjp_does(layer, channel):
    params = random_params(SMALL, seed=3)
    x = jax.random.normal(jax.random.key(4), (32, 32, 3))
    select = Select.strongest(channel)
    by_vjp = project(SMALL, params, x, layer, select, rule="deconvnet")
    explicit = project_explicit(SMALL, params, x, layer, select)
    assert float(jnp.abs(by_vjp).max()) > 0
    assert rel(explicit, by_vjp) < 1e-5


@pytest.mark.parametrize("suffix", [".safetensors", ".npz"])
def test_resnet_files_in_torchvision_names_round_trip(tmp_path, suffix):
    rng = np.random.default_rng(0)
    shapes = weights.torchvision_shapes(SMALL)
    state = {k: (np.int64(rng.integers(0, 100)) if k.endswith("num_batches_tracked") else
                 rng.normal(0, 0.5, s).astype(np.float32) + (1.0 if k.endswith("running_var") else 0.0))
             for k, s in shapes.items()}
    path = tmp_path / f"resnet{suffix}"
    if suffix == ".npz":
        np.savez(path, **state)
    else:
        from safetensors.numpy import save_file
        save_file({k: np.asarray(v) for k, v in state.items()}, str(path))
    params = weights.load(SMALL, path)
    np.testing.assert_array_equal(params["layer2.0.conv1"]["kernel"],
                                  state["layer2.0.conv1.weight"].transpose(2, 3, 1, 0))
    np.testing.assert_array_equal(params["layer2.0.downsample.1"]["var"], state["layer2.0.downsample.1.running_var"])
    np.testing.assert_array_equal(params["fc"]["kernel"], state["fc.weight"].T)
    back = weights.to_torchvision(SMALL, params)
    assert set(back) == set(state)
    for key, value in state.items():
        if not key.endswith("num_batches_tracked"):
            np.testing.assert_array_equal(back[key], value, err_msg=key)


def test_a_resnet34_file_into_resnet18_names_layers_and_shapes():
    deeper = models._resnet("resnet34", (3, 4, 6, 3), 1, 5, 32, 3, None, None, 4)
    params34 = random_params(deeper)
    with pytest.raises(ValueError) as info:
        weights.from_torchvision(SMALL, weights.to_torchvision(deeper, params34), source="resnet34.pth")
    msg = str(info.value)
    assert "resnet34.pth does not fit model resnet18" in msg
    assert "unexpected layer1.2.conv1.weight (shape (4, 4, 3, 3))" in msg
    assert "unexpected layer3.5.bn2.running_var (shape (16,))" in msg
    assert "(the file has blocks ['layer1.2', 'layer2.2', 'layer2.3', 'layer3.2', 'layer3.3', 'layer3.4', " \
           "'layer3.5', 'layer4.2'] that resnet18 lacks: weights of a deeper network?)" in msg


def test_incremental_occlusion_equals_full_re_inference_and_full_equals_direct_inference():
    model = models.resnet18(num_classes=7, input_size=64, width=4)
    params = random_params(model, seed=7)
    x = jax.random.normal(jax.random.key(8), (1, 64, 64, 3))
    full = occlusion.sweep(model, params, x, [5], 11, 7, score="logit", layer="layer2.1.relu")
    incremental = occlusion.sweep(model, params, x, [5], 11, 7, score="logit", layer="layer2.1.relu",
                                  method="incremental")
    assert rel(incremental.score_NPQ, full.score_NPQ) < 1e-5
    assert rel(incremental.feature_NPQ, full.feature_NPQ) < 1e-5
    drop = full.base_score_N[:, None, None] - full.score_NPQ
    assert rel(incremental.base_score_N[:, None, None] - incremental.score_NPQ, drop) < 1e-4
    for i, j in ((0, 0), (4, 7), (8, 3)):  # rows and columns 0, 28 and 53 (cut at 64), 0, 49 and 21
        row, col = int(full.rows_P[i]), int(full.cols_Q[j])
        logit = model.apply(params, x.at[:, row:row + 11, col:col + 11].set(0.0))[0][0, 5]
        np.testing.assert_allclose(full.score_NPQ[0, i, j], logit, rtol=1e-5, atol=1e-5)


def conv(name, inputs=()):
    return models.conv(name, 2, 3, padding=1, inputs=inputs)


BAD_GRAPHS = [
    ("cycle", lambda: models.Model("g", (conv("a", inputs=("c",)), conv("b"), conv("c")), (8, 8, 1)),
     "the layers form a cycle: a -> b -> c -> a"),
    ("self", lambda: models.Model("g", (conv("a"), conv("b", inputs=("b",))), (8, 8, 1)),
     "the layers form a cycle: b -> b"),
    ("later", lambda: models.Model("g", (conv("a", inputs=("b",)), conv("b", inputs=("input",))), (8, 8, 1)),
     "layer 'a' takes input 'b', which comes after it in the tuple"),
    ("unknown", lambda: models.Model("g", (conv("a"), models.add("sum", "a", "x")), (8, 8, 1)),
     "layer 'sum' takes input 'x', which is neither a layer of the network nor 'input'"),
    ("add-shapes", lambda: models.Model("g", (conv("a"), models.max_pool("p"), models.add("sum", "a", "p")),
                                        (8, 8, 1)),
     "addition 'sum' needs inputs of one shape, got 'a' (8, 8, 2), 'p' (4, 4, 2)"),
    ("add-one-input", lambda: models.Model("g", (conv("a"), models.add("sum", "a")), (8, 8, 1)),
     "addition 'sum' needs at least 2 inputs"),
    ("input-name", lambda: models.Model("g", (conv("input"),), (8, 8, 1)), "no layer may be called 'input'"),
    ("inputs-string", lambda: conv("a", inputs="b"), "layer 'a': inputs must be a tuple of layer names, got 'b'"),
    ("bn-without-statistics", lambda: SMALL.apply(
        {**random_params(SMALL), "bn1": {"scale": jnp.ones(4), "bias": jnp.zeros(4)}}, jnp.zeros((1, 32, 32, 3))),
     "missing params['bn1']['mean'] (expected shape (4,)) (batch norm 'bn1' normalizes with its running "
     "statistics at inference)"),
    ("bn-eps", lambda: models.batch_norm("bn", eps=0.0).check(), "layer 'bn': batch norm needs eps > 0"),
    ("resnet-width", lambda: models.build("resnet18", width=0), "width must be an integer >= 1, got 0"),
]


@pytest.mark.parametrize("call,message", [c[1:] for c in BAD_GRAPHS], ids=[c[0] for c in BAD_GRAPHS])
def test_bad_graphs_raise_value_error_saying_expected_and_given(call, message):
    with pytest.raises(ValueError) as info:
        call()
    assert message in str(info.value)


def test_kinds_are_found_by_name():
    layer = kinds.Layer("conv", "c", features=3, kernel=(3, 3))
    assert isinstance(layer, kinds.Conv) and layer == models.conv("c", 3, 3)
    assert hash(layer) == hash(models.conv("c", 3, 3))
