"""jaxvis.wrap: any JAX network, its layers named and its ReLUs swapped by rewriting the jaxpr.

Oracles: one small CNN written five ways with the same weights (the jaxvis tuple, whose
paths are tested against the explicit deconvnet, Flax linen, Flax nnx, Equinox and a
plain function with ``jnp.maximum``) must agree within 1e-6; a residual block that uses
one ReLU function twice and an MLP whose ReLUs sit inside ``jit``, ``custom_jvp``,
``jax.checkpoint`` and ``scan`` are checked against backward passes written out in NumPy.
"""

import runpy
from pathlib import Path

import equinox as eqx
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import rel_err
from flax import nnx
from jax import lax

import jaxvis
from jaxvis import models, occlusion, saliency, synthesis, topk
from jaxvis.project import Select, project_batch
from jaxvis.wrap import wrap, wrap_equinox, wrap_linen, wrap_nnx

TOL = 1e-6
RULES = ("gradient", "guided", "deconvnet")
NAMES = ("conv1", "relu1", "pool1", "conv2", "relu2", "pool2", "flatten1", "fc1", "relu3", "fc2")
ROOT = Path(__file__).resolve().parents[1]


# ---------------------------------------------------------------------------------------
# One small CNN, five ways


def tiny_tuple() -> models.Model:
    L = models
    return models.Model("tiny", (L.conv("conv1", 4, 3, padding=1), L.relu("relu1"), L.max_pool("pool1", 2),
                                 L.conv("conv2", 8, 3, padding=1), L.relu("relu2"), L.max_pool("pool2", 2),
                                 L.flatten("flatten1"), L.dense("fc1", 16), L.relu("relu3"), L.dense("fc2", 5)),
                        (12, 12, 3))


def tiny_params(model):
    """He-normal kernels and non-zero biases, so that every bias path is exercised."""
    params = model.init(jax.random.key(0))
    rng = np.random.default_rng(1)
    return {name: {"kernel": group["kernel"], "bias": jnp.asarray(rng.normal(0, 0.1, group["bias"].shape), jnp.float32)}
            for name, group in params.items()}


class TinyLinen(nn.Module):
    @nn.compact
    def __call__(self, x):
        x = nn.max_pool(nn.relu(nn.Conv(4, (3, 3), padding=1, name="conv1")(x)), (2, 2), (2, 2))
        x = nn.max_pool(nn.relu(nn.Conv(8, (3, 3), padding=1, name="conv2")(x)), (2, 2), (2, 2))
        x = x.reshape(x.shape[0], -1)
        return nn.Dense(5, name="fc2")(nn.relu(nn.Dense(16, name="fc1")(x)))


class TinyNNX(nnx.Module):
    def __init__(self, rngs):
        self.conv1 = nnx.Conv(3, 4, (3, 3), padding=1, rngs=rngs)
        self.conv2 = nnx.Conv(4, 8, (3, 3), padding=1, rngs=rngs)
        self.fc1 = nnx.Linear(72, 16, rngs=rngs)
        self.fc2 = nnx.Linear(16, 5, rngs=rngs)

    def __call__(self, x):
        x = nnx.max_pool(nnx.relu(self.conv1(x)), (2, 2), (2, 2))
        x = nnx.max_pool(nnx.relu(self.conv2(x)), (2, 2), (2, 2))
        return self.fc2(nnx.relu(self.fc1(x.reshape(x.shape[0], -1))))


class TinyEqx(eqx.Module):
    conv1: eqx.nn.Conv2d
    conv2: eqx.nn.Conv2d
    fc1: eqx.nn.Linear
    fc2: eqx.nn.Linear
    pool: eqx.nn.MaxPool2d

    def __init__(self, key):
        k = jax.random.split(key, 4)
        self.conv1 = eqx.nn.Conv2d(3, 4, 3, padding=1, key=k[0])
        self.conv2 = eqx.nn.Conv2d(4, 8, 3, padding=1, key=k[1])
        self.fc1 = eqx.nn.Linear(72, 16, key=k[2])
        self.fc2 = eqx.nn.Linear(16, 5, key=k[3])
        self.pool = eqx.nn.MaxPool2d(2, 2)

    def __call__(self, x_CHW):
        x = self.pool(jax.nn.relu(self.conv1(x_CHW)))
        x = self.pool(jax.nn.relu(self.conv2(x)))
        return self.fc2(jax.nn.relu(self.fc1(x.reshape(-1))))


def tiny_plain(params, x):
    """The network as one function of the tuple's params, ReLUs as ``jnp.maximum(x, 0)``."""
    def conv(x, p):
        y = lax.conv_general_dilated(x, p["kernel"], (1, 1), ((1, 1), (1, 1)), dimension_numbers=("NHWC", "HWIO", "NHWC"))
        return y + p["bias"].reshape(1, 1, 1, -1)

    def pool(x):
        return lax.reduce_window(x, -jnp.inf, lax.max, (1, 2, 2, 1), (1, 2, 2, 1), "VALID")

    x = pool(jnp.maximum(conv(x, params["conv1"]), 0))
    x = pool(jnp.maximum(conv(x, params["conv2"]), 0))
    x = x.reshape(x.shape[0], -1)
    x = jnp.maximum(x @ params["fc1"]["kernel"] + params["fc1"]["bias"][None], 0)
    return x @ params["fc2"]["kernel"] + params["fc2"]["bias"][None]


def chw_dense(kernel, hwc):
    """A dense kernel ``(H*W*C, out)`` on an NHWC flatten as an ``(out, C*H*W)`` weight on a
    CHW flatten (Equinox's and PyTorch's)."""
    h, w, c = hwc
    return np.asarray(kernel).reshape(h, w, c, -1).transpose(2, 0, 1, 3).reshape(h * w * c, -1).T


def equinox_weights(module: TinyEqx, params) -> TinyEqx:
    """The tuple's weights in Equinox's layout: OIHW kernels, (C, 1, 1) conv biases, (out, in)
    dense kernels, and fc1's inputs reordered from NHWC's flatten to Equinox's CHW."""
    def conv(p):
        return jnp.transpose(p["kernel"], (3, 2, 0, 1)), p["bias"].reshape(-1, 1, 1)

    fc1 = jnp.asarray(chw_dense(params["fc1"]["kernel"], (3, 3, 8)))
    leaves = (*conv(params["conv1"]), *conv(params["conv2"]), fc1, params["fc1"]["bias"],
              params["fc2"]["kernel"].T, params["fc2"]["bias"])
    where = lambda m: (m.conv1.weight, m.conv1.bias, m.conv2.weight, m.conv2.bias, m.fc1.weight, m.fc1.bias,
                       m.fc2.weight, m.fc2.bias)
    return eqx.tree_at(where, module, leaves)


@pytest.fixture(scope="module")
def five():
    """``{way: (model, params)}`` for the tuple and its four wrapped twins, and the images."""
    model = tiny_tuple()
    params = tiny_params(model)
    x = jnp.asarray(np.random.default_rng(2).normal(size=(2, 12, 12, 3)), jnp.float32)
    # modules built abstractly (no eager random draws), then given the tuple's weights
    graphdef, state = nnx.split(nnx.eval_shape(lambda: TinyNNX(nnx.Rngs(0))))
    state = jax.tree_util.tree_map_with_path(lambda path, _: params[path[0].key][path[1].key], state)
    return {
        "tuple": (model, params),
        "linen": wrap_linen(TinyLinen(), {"params": params}, x),
        "nnx": wrap_nnx(nnx.merge(graphdef, state), x),
        "equinox": wrap_equinox(equinox_weights(eqx.filter_eval_shape(TinyEqx, jax.random.key(0)), params), x),
        "plain": (wrap(tiny_plain, params, x, name="tiny_plain"), params),
    }, x


WRAPPED = ("linen", "nnx", "equinox", "plain")


def as_tuple_order(way: str, name: str, act):
    """Equinox flattens CHW maps: its flatten reordered to the tuple's HWC order."""
    if way == "equinox" and name == "flatten1":
        return act.reshape(-1, 8, 3, 3).transpose(0, 2, 3, 1).reshape(-1, 72)
    return act


@pytest.mark.parametrize("way", WRAPPED)
def test_listing_names_shapes_and_fields_match_the_tuple(five, way):
    (models_, _) = five
    reference, _ = models_["tuple"]
    model, _ = models_[way]
    assert model.names == NAMES
    assert model.shapes == reference.shapes
    assert model.fields == {n: f for n, f in reference.fields.items() if n in reference.names}
    assert model.num_classes == 5 and model.relus == 3
    listing = model.listing()
    assert all(name in listing for name in NAMES)


def test_a_jaxvis_tuple_wrapped_keeps_its_relus_and_names(five):
    """jaxvis's own ReLU is a custom_vjp whose body is a ReLU: the rewriter recognises it."""
    models_, x = five
    reference, params = models_["tuple"]
    model = wrap(lambda p, x: reference.apply(p, x)[0], params, x)
    assert model.relus == 3
    assert [n for n in model.names if model.kinds[n] in ("conv", "dense", "relu")] == [
        "conv1", "relu1", "conv2", "relu2", "fc1", "relu3", "fc2"]


def test_a_relu_inside_a_users_custom_vjp_is_refused_under_a_rule():
    @jax.custom_vjp
    def clipped(h):
        return jnp.minimum(jax.nn.relu(h), 1.0)

    clipped.defvjp(lambda h: (clipped(h), h), lambda h, g: (g,))
    params = jnp.ones((12, 2))
    x = jnp.ones((1, 2, 2, 3))
    model = wrap(lambda p, x: clipped(x.reshape(x.shape[0], -1) @ p), params, x)
    with pytest.raises(ValueError, match="a ReLU inside a custom_vjp function"):
        model.apply(params, x, rule="deconvnet")


@pytest.mark.parametrize("way", WRAPPED)
def test_logits_and_trace_equal_the_tuple(five, way):
    models_, x = five
    reference, ref_params = models_["tuple"]
    model, params = models_[way]
    logits, trace = jax.jit(lambda p, x: model.apply(p, x))(params, x)
    ref_logits, ref_trace = jax.jit(lambda p, x: reference.apply(p, x))(ref_params, x)
    assert rel_err(logits, ref_logits) < TOL
    for name in NAMES:
        err = rel_err(as_tuple_order(way, name, trace.activations[name]), ref_trace.activations[name])
        assert err < TOL, f"{way} {name}: {err:.2e}"


@pytest.mark.parametrize("way, layer", [("linen", "pool2"), ("nnx", "relu1"), ("equinox", "fc1"), ("plain", "relu2")])
def test_projections_of_every_rule_equal_the_tuple(five, way, layer):
    """One layer per way (all four ways share the rewriter); units that are on, since an
    off unit projects to zero whatever the rule."""
    models_, x = five
    reference, ref_params = models_["tuple"]
    model, params = models_[way]
    act = np.asarray(jax.jit(lambda p, x: reference.apply(p, x)[1].activations[layer])(ref_params, x))
    if act.ndim == 4:
        select = Select.strongest(jnp.array([3, 1]))
    else:
        select = Select.unit(jnp.asarray(act.argmax(1)))
    for rule in RULES:
        got = project_batch(model, params, x, layer, select, rule)
        want = project_batch(reference, ref_params, x, layer, select, rule)
        assert float(jnp.abs(want).max()) > 0
        assert rel_err(got, want) < TOL, f"{way} {rule} {layer}: {rel_err(got, want):.2e}"


def test_saliency_methods_on_a_wrapped_model_equal_the_tuple(five):
    models_, x = five
    reference, ref_params = models_["tuple"]
    model, params = models_["plain"]
    classes = jnp.array([1, 3])
    assert rel_err(saliency.gradients(model, params, x, classes, "guided"),
                   saliency.gradients(reference, ref_params, x, classes, "guided")) < TOL
    assert rel_err(saliency.integrated_gradients(model, params, x, classes, steps=2),
                   saliency.integrated_gradients(reference, ref_params, x, classes, steps=2)) < TOL
    maps = np.asarray(x[..., 0])  # any map: the curves' ranking is what both networks share
    got = saliency.deletion(model, params, x, maps, classes, steps=2)
    want = saliency.deletion(reference, ref_params, x, maps, classes, steps=2)
    assert rel_err(got.probabilities, want.probabilities) < TOL


def test_top_k_on_a_wrapped_model_equals_the_tuple(five):
    models_, x = five
    reference, ref_params = models_["tuple"]
    model, params = models_["equinox"]
    got = topk.top_k(model, params, [x[:1], x[1:]], "relu2", k=3)
    want = topk.top_k(reference, ref_params, [x[:1], x[1:]], "relu2", k=3)
    assert rel_err(got.value, want.value) < TOL
    assert np.array_equal(got.image, want.image) and np.array_equal(got.row, want.row)
    # the receptive-field crops: whole-image projections cropped (wrapped) against the
    # tuple's projections on each field or border window
    for rule in ("deconvnet", "guided"):
        got_patches = topk.project_top_k(model, params, x, got, "relu2", maps=[0, 5, 7], rule=rule)
        want_patches = topk.project_top_k(reference, ref_params, x, want, "relu2", maps=[0, 5, 7], rule=rule)
        assert float(np.abs(want_patches.projection).max()) > 0
        assert rel_err(got_patches.projection, want_patches.projection) < TOL, rule
        assert np.array_equal(got_patches.patch, want_patches.patch)
        assert np.array_equal(got_patches.window, want_patches.window)


# ---------------------------------------------------------------------------------------
# Hand-written backward passes


def conv_same(x_NHWC, k_HWIO, b):
    """3x3 stride-1 convolution with zero padding 1, in NumPy."""
    n, h, w, _ = x_NHWC.shape
    xp = np.pad(x_NHWC, ((0, 0), (1, 1), (1, 1), (0, 0)))
    return sum(np.einsum("nhwc,co->nhwo", xp[:, i:i + h, j:j + w], k_HWIO[i, j]) for i in range(3)
               for j in range(3)) + b


def conv_same_vjp(g_NHWO, k_HWIO):
    """The input cotangent of :func:`conv_same`: each tap's signal carried back by hand."""
    n, h, w, _ = g_NHWO.shape
    gx = np.zeros((n, h + 2, w + 2, k_HWIO.shape[2]))
    for i in range(3):
        for j in range(3):
            gx[:, i:i + h, j:j + w] += np.einsum("nhwo,co->nhwc", g_NHWO, k_HWIO[i, j])
    return gx[:, 1:-1, 1:-1]


def rule_backward(rule: str, g, pre):
    """A ReLU's backward pass, written out: ``pre`` is its input."""
    if rule == "gradient":
        return g * (pre > 0)
    if rule == "deconvnet":
        return np.maximum(g, 0)
    return np.maximum(g, 0) * (pre > 0)


class Residual(nn.Module):
    """conv - ReLU - conv - add the skip - the same ReLU again, then a dense head."""

    @nn.compact
    def __call__(self, x):
        act = jax.nn.relu  # one activation used twice: module hooks see it once
        r1 = act(nn.Conv(4, (3, 3), padding=1, name="conv_a")(x))
        block = nn.Conv(4, (3, 3), padding=1, name="conv_b")(r1) + r1
        r2 = act(block)
        return nn.Dense(3, name="head")(r2.reshape(r2.shape[0], -1))


@pytest.mark.parametrize("rule", ("guided", "deconvnet"))
def test_residual_block_with_one_relu_twice_matches_a_hand_written_backward_pass(rule):
    x = np.random.default_rng(4).normal(size=(1, 6, 6, 2)).astype(np.float32)
    module = Residual()
    variables = jax.jit(module.init)(jax.random.key(1, impl="rbg"), x)
    model, params = wrap_linen(module, variables, jnp.asarray(x))
    assert model.names == ("conv_a", "relu1", "conv_b", "add1", "relu2", "flatten1", "head")
    assert model.fields["add1"] == models.ReceptiveField((5, 5), (1, 1), (-2, -2))  # conv_b's, covering the skip's
    p = jax.tree.map(lambda a: np.asarray(a, np.float64), variables["params"])
    h1 = conv_same(x.astype(np.float64), p["conv_a"]["kernel"], p["conv_a"]["bias"])
    r1 = np.maximum(h1, 0)
    s = conv_same(r1, p["conv_b"]["kernel"], p["conv_b"]["bias"]) + r1
    r2 = np.maximum(s, 0)
    channel = 2
    row, col = np.unravel_index(np.argmax(r2[0, :, :, channel]), r2.shape[1:3])
    g = np.zeros_like(r2)
    g[0, row, col, channel] = r2[0, row, col, channel]
    g_s = rule_backward(rule, g, s)
    g_r1 = g_s + conv_same_vjp(g_s, p["conv_b"]["kernel"])
    want = conv_same_vjp(rule_backward(rule, g_r1, h1), p["conv_a"]["kernel"])
    got = jaxvis.project(model, params, jnp.asarray(x[0]), "relu2", Select.strongest(channel), rule)
    assert np.abs(want).max() > 0
    assert rel_err(got, want[0]) < 1e-5


def mlp_reference(ws, bs, x_flat, rule, target):
    """Logit ``target``'s backward signal through a ReLU MLP, by hand."""
    pres, h = [], x_flat
    for w, b in zip(ws[:-1], bs[:-1]):
        pres.append(h @ w + b)
        h = np.maximum(pres[-1], 0)
    g = np.zeros((x_flat.shape[0], ws[-1].shape[1]))
    g[:, target] = 1
    g = g @ ws[-1].T
    for w, pre in zip(ws[-2::-1], pres[::-1]):
        g = rule_backward(rule, g, pre) @ w.T
    return g


def test_relus_inside_jit_custom_jvp_checkpoint_scan_and_cond_take_the_rule():
    rng = np.random.default_rng(5)
    sizes = (12, 6, 6, 6, 6, 4)
    ws = [rng.normal(0, 0.5, (a, b)).astype(np.float32) for a, b in zip(sizes, sizes[1:])]
    bs = [rng.normal(0, 0.2, (b,)).astype(np.float32) for b in sizes[1:]]
    params = {"w": ws, "b": bs, "gate": jnp.ones(())}

    @jax.custom_jvp
    def first_layer(h, w, b):  # a user's custom_jvp around a ReLU
        return jax.nn.relu(h @ w + b[None])

    first_layer.defjvp(lambda primals, tangents: jax.jvp(lambda *a: jax.nn.relu(a[0] @ a[1] + a[2][None]),
                                                         primals, tangents))

    @jax.jit
    def middle(h, w, b):
        return jnp.maximum(h @ w + b[None], 0)

    def net(p, x):
        h = first_layer(x.reshape(x.shape[0], -1), p["w"][0], p["b"][0])
        h = jax.checkpoint(middle)(h, p["w"][1], p["b"][1])
        h, _ = lax.scan(lambda h, wb: (jax.nn.relu(h @ wb[0] + wb[1][None]), None), h,
                        (p["w"][2][None], p["b"][2][None]))
        h = lax.cond(p["gate"] > 0, lambda h: jnp.maximum(h @ p["w"][3] + p["b"][3][None], 0), lambda h: h, h)
        return h @ p["w"][4] + p["b"][4][None]

    x = rng.normal(size=(3, 2, 2, 3)).astype(np.float32)
    model = wrap(net, params, jnp.asarray(x), name="nested")
    assert model.relus == 4
    for rule in RULES:
        got = saliency.gradients(model, params, jnp.asarray(x), 1, rule)
        want = mlp_reference([w.astype(np.float64) for w in ws], bs, x.reshape(3, -1).astype(np.float64), rule, 1)
        assert rel_err(got.reshape(3, -1), want) < 1e-5, rule


# ---------------------------------------------------------------------------------------
# Bad input


def test_a_function_that_does_not_trace_is_refused():
    def branches(p, x):
        return x.reshape(x.shape[0], -1) @ p if x.sum() > 0 else -x.reshape(x.shape[0], -1) @ p

    with pytest.raises(ValueError, match="does not trace.*jax.lax.cond"):
        wrap(branches, jnp.ones((12, 2)), jnp.ones((1, 2, 2, 3)))


def test_params_that_do_not_fit_are_refused(five):
    models_, x = five
    model, params = models_["plain"]
    with pytest.raises(ValueError, match="fails for x of shape"):
        wrap(tiny_plain, {**params, "fc1": {"kernel": jnp.ones((5, 16)), "bias": params["fc1"]["bias"]}}, x)
    with pytest.raises(ValueError, match=r"missing \[\"\['fc2'\]\['bias'\]\"\]"):
        model.apply({**params, "fc2": {"kernel": params["fc2"]["kernel"]}}, x)
    with pytest.raises(ValueError, match=r"params\['fc2'\]\['kernel'\]: expected \(16, 5\) float32, got \(16, 4\)"):
        model.apply({**params, "fc2": {**params["fc2"], "kernel": jnp.ones((16, 4))}}, x)


def test_a_layer_not_in_the_listing_is_refused_with_a_suggestion(five):
    models_, x = five
    model, params = models_["linen"]
    with pytest.raises(ValueError, match="Did you mean 'relu2'"):
        jaxvis.project(model, params, x[0], "relu02", Select.map(0))
    with pytest.raises(ValueError, match="layer 'fc1' .* has no spatial maps"):
        topk.top_k(model, params, [x], "fc1")


@pytest.mark.parametrize("activation, found", [(jnp.tanh, "tanh"), (jax.nn.gelu, "tanh"),
                                               (lambda h: jax.nn.gelu(h, approximate=False), "erf"),
                                               (jax.nn.leaky_relu, "select_n"), (jax.nn.sigmoid, "logistic"),
                                               (jax.nn.relu6, "min")])
def test_an_activation_the_rules_do_not_define_is_refused_under_a_rule(activation, found):
    def net(p, x):
        h = jax.nn.relu(x.reshape(x.shape[0], -1) @ p["a"])
        return activation(h @ p["b"]) @ p["c"]

    params = {"a": jnp.ones((12, 4)), "b": jnp.ones((4, 4)), "c": jnp.ones((4, 2))}
    x = jnp.ones((1, 2, 2, 3))
    model = wrap(net, params, x)
    assert model.apply(params, x, rule="gradient")[0].shape == (1, 2)
    for rule in ("guided", "deconvnet"):
        with pytest.raises(ValueError, match=f"defined for ReLUs only.*{found}.*after layer '(dense2|relu2)'"):
            saliency.gradients(model, params, x, 0, rule)


def test_a_rule_on_a_network_without_relus_is_refused():
    model = wrap(lambda p, x: x.reshape(x.shape[0], -1) @ p, jnp.ones((12, 2)), jnp.ones((1, 2, 2, 3)))
    assert model.relus == 0 and model.names == ("flatten1", "dense1")
    with pytest.raises(ValueError, match="has no ReLU on its input's path"):
        saliency.gradients(model, jnp.ones((12, 2)), jnp.ones((1, 2, 2, 3)), 0, "guided")


@pytest.mark.parametrize("make, message", [
    (lambda: wrap(lambda p, x: (x.sum(), x.sum()), {}, jnp.ones((1, 2, 2, 3))), "one array of logits"),
    (lambda: wrap(lambda p, x: x, {}, jnp.ones((2, 3))), r"x_example must be a float batch of images \(N, H, W, C\)"),
    (lambda: wrap("f", {}, jnp.ones((1, 2, 2, 3))), "apply_fn must be a function"),
    (lambda: wrap_linen(nnx.eval_shape(lambda: TinyNNX(nnx.Rngs(0))), {}, jnp.ones((1, 12, 12, 3))),
     "flax.linen.Module"),
    (lambda: wrap_equinox(TinyLinen(), jnp.ones((1, 12, 12, 3))), "equinox.Module"),
])
def test_bad_wrap_arguments_are_refused(make, message):
    with pytest.raises(ValueError, match=message):
        make()


# ---------------------------------------------------------------------------------------
# The README's examples


@pytest.mark.parametrize("example", ("flax_model.py", "equinox_model.py"))
def test_the_readme_examples_run(example):
    path = ROOT / "docs" / "examples" / example
    assert path.read_text().rstrip("\n") in (ROOT / "README.md").read_text(), f"README.md does not show {example} as it is"
    out = runpy.run_path(str(path))
    assert out["projection"].shape == out["image"].shape and float(jnp.abs(out["projection"]).max()) > 0


# ---------------------------------------------------------------------------------------
# Grad-CAM: the same code path as the tuple's, through ``apply``'s ``at``


def pool_first_max(a_NHWC):
    """2x2 stride-2 max pool in NumPy, and each window's switch: its first maximum."""
    n, h, w, c = a_NHWC.shape
    windows = a_NHWC.reshape(n, h // 2, 2, w // 2, 2, c).transpose(0, 1, 3, 5, 2, 4).reshape(n, h // 2, w // 2, c, 4)
    return windows.max(-1), windows.argmax(-1)


def unpool_first_max(g_NPQC, switches):
    """The pool's backward pass: each output's signal to its window's switch."""
    n, p, q, c = g_NPQC.shape
    out = np.zeros((n, p, q, c, 4))
    np.put_along_axis(out, switches[..., None], g_NPQC[..., None], -1)
    return out.reshape(n, p, q, c, 2, 2).transpose(0, 1, 4, 2, 5, 3).reshape(n, 2 * p, 2 * q, c)


def tiny_grad_cam_by_hand(params, x, classes):
    """Grad-CAM at relu2 and nearest-upsampled guided Grad-CAM of the tiny CNN for one
    class per image, forward and backward passes written out in NumPy (float64)."""
    p = jax.tree.map(lambda a: np.asarray(a, np.float64), params)
    x = np.asarray(x, np.float64)
    h1 = conv_same(x, p["conv1"]["kernel"], p["conv1"]["bias"])
    p1, s1 = pool_first_max(np.maximum(h1, 0))
    h2 = conv_same(p1, p["conv2"]["kernel"], p["conv2"]["bias"])
    a = np.maximum(h2, 0)  # relu2: the maps A
    p2, s2 = pool_first_max(a)
    z = p2.reshape(len(x), -1) @ p["fc1"]["kernel"] + p["fc1"]["bias"]
    onehot = np.eye(5)[np.asarray(classes)]

    def down_to_relu2(rule):
        g = rule_backward(rule, onehot @ p["fc2"]["kernel"].T, z) @ p["fc1"]["kernel"].T
        return unpool_first_max(g.reshape(p2.shape), s2)

    alpha_NK = down_to_relu2("gradient").mean(axis=(1, 2))
    cam = np.maximum(np.einsum("nk,nhwk->nhw", alpha_NK, a), 0)
    g = rule_backward("guided", down_to_relu2("guided"), h2)
    g = unpool_first_max(conv_same_vjp(g, p["conv2"]["kernel"]), s1)
    guided = conv_same_vjp(rule_backward("guided", g, h1), p["conv1"]["kernel"])
    # PyTorch's nearest from 6 to 12 reads source row floor(i / 2)
    return cam, guided * np.repeat(np.repeat(cam, 2, axis=1), 2, axis=2)[..., None]


def test_grad_cam_of_the_tiny_cnn_equals_a_hand_written_one(five):
    models_, x = five
    model, params = models_["tuple"]
    classes = jnp.array([0, 4])
    want_cam, want_guided = tiny_grad_cam_by_hand(params, x, classes)
    assert saliency.cam_layer(model) == "relu2" and want_cam.max() > 0 and np.abs(want_guided).max() > 0
    assert rel_err(saliency.grad_cam(model, params, x, classes), want_cam) < 1e-5
    assert rel_err(saliency.guided_grad_cam(model, params, x, classes, upsample="nearest"), want_guided) < 1e-5


@pytest.mark.parametrize("way", ("linen", "plain"))
def test_grad_cam_and_guided_grad_cam_of_a_wrapped_model_equal_the_tuple(five, way):
    """Default layer relu2, and a conv and a pool output; each class of each image."""
    models_, x = five
    reference, ref_params = models_["tuple"]
    model, params = models_[way]
    assert saliency.cam_layer(model) == saliency.cam_layer(reference) == "relu2"
    classes = jnp.array([[0, 4], [2, 1]])
    for layer, upsample in ((None, None), ("conv1", "bilinear"), ("pool1", "nearest")):
        want = saliency.grad_cam(reference, ref_params, x, classes, layer=layer, upsample=upsample)
        got = saliency.grad_cam(model, params, x, classes, layer=layer, upsample=upsample)
        assert float(want.max()) > 0 and rel_err(got, want) < TOL, (layer, rel_err(got, want))
    want = saliency.guided_grad_cam(reference, ref_params, x, classes)
    got = saliency.guided_grad_cam(model, params, x, classes)
    assert float(jnp.abs(want).max()) > 0 and rel_err(got, want) < TOL, rel_err(got, want)


def test_grad_cam_across_a_skip_connection_equals_a_hand_written_one():
    """In a residual block the signal to the block's input arrives through the convolution
    and the skip; the default layer is the block's output after its ReLU."""
    x = np.random.default_rng(5).normal(size=(2, 6, 6, 2)).astype(np.float32)
    module = Residual()
    variables = jax.jit(module.init)(jax.random.key(2, impl="rbg"), x)
    model, params = wrap_linen(module, variables, jnp.asarray(x))
    assert saliency.cam_layer(model) == "relu2"
    p = jax.tree.map(lambda a: np.asarray(a, np.float64), variables["params"])
    h1 = conv_same(x.astype(np.float64), p["conv_a"]["kernel"], p["conv_a"]["bias"])
    r1 = np.maximum(h1, 0)
    s = conv_same(r1, p["conv_b"]["kernel"], p["conv_b"]["bias"]) + r1
    r2 = np.maximum(s, 0)
    classes = np.array([1, 2])
    g_r2 = p["head"]["kernel"].T[classes].reshape(r2.shape)
    g_s = rule_backward("gradient", g_r2, s)
    g_r1 = g_s + conv_same_vjp(g_s, p["conv_b"]["kernel"])
    for layer, maps, grads in (("relu2", r2, g_r2), ("relu1", r1, g_r1)):
        want = np.maximum(np.einsum("nk,nhwk->nhw", grads.mean(axis=(1, 2)), maps), 0)
        got = saliency.grad_cam(model, params, jnp.asarray(x), jnp.asarray(classes), layer=layer)
        assert want.max() > 0 and rel_err(got, want) < 1e-5, (layer, rel_err(got, want))


def test_at_adds_its_delta_to_a_layer_output(five):
    """``at`` on a wrapped model: the logits of relu2's maps plus a delta are the layers
    above relu2 run on them, written out in NumPy."""
    models_, x = five
    reference, ref_params = models_["tuple"]
    model, params = models_["equinox"]
    maps = model.apply(params, x, until="relu2")[0]
    delta = jnp.asarray(np.random.default_rng(3).normal(size=maps.shape), jnp.float32)
    logits, trace = model.apply(params, x, at={"relu2": delta})
    p = jax.tree.map(lambda a: np.asarray(a, np.float64), ref_params)
    pooled = pool_first_max(np.asarray(maps + delta, np.float64))[0].reshape(len(x), -1)
    hidden = np.maximum(pooled @ p["fc1"]["kernel"] + p["fc1"]["bias"], 0)
    want = hidden @ p["fc2"]["kernel"] + p["fc2"]["bias"]
    assert rel_err(logits, want) < 1e-5 and rel_err(trace.activations["relu2"], maps + delta) < TOL
    with pytest.raises(ValueError, match=r"at\['relu2'\] must have the layer's output shape \(2, 6, 6, 8\)"):
        model.apply(params, x, at={"relu2": maps[0]})


def test_methods_that_need_the_layer_tuple_refuse_a_wrapped_model(five):
    models_, x = five
    model, params = models_["plain"]
    with pytest.raises(ValueError, match="wrapped"):
        occlusion.sweep(model, params, x, np.array([0, 1]), patch=4, stride=4, method="incremental")


def test_receptive_fields_of_strided_dilated_and_padded_layers_equal_the_tuples():
    """Fields derived from the jaxpr against the tuple's, computed from its descriptions."""
    L = models
    reference = models.Model("geometry", (L.conv("c1", 4, 5, stride=2, padding=2), L.relu("r1"),
                                          L.max_pool("p1", 3, 2, padding=1), L.conv("c2", 4, 3, padding=2, dilation=2),
                                          L.relu("r2"), L.flatten("f"), L.dense("d", 3)), (17, 17, 2))
    params = reference.init(jax.random.key(0))

    def net(p, x):
        dn = ("NHWC", "HWIO", "NHWC")
        h = lax.conv_general_dilated(x, p["c1"]["kernel"], (2, 2), ((2, 2), (2, 2)), dimension_numbers=dn)
        h = lax.reduce_window(jnp.maximum(h, 0), -jnp.inf, lax.max, (1, 3, 3, 1), (1, 2, 2, 1),
                              ((0, 0), (1, 1), (1, 1), (0, 0)))
        h = lax.conv_general_dilated(h, p["c2"]["kernel"], (1, 1), ((2, 2), (2, 2)), rhs_dilation=(2, 2),
                                     dimension_numbers=dn)
        return jnp.maximum(h, 0).reshape(h.shape[0], -1) @ p["d"]["kernel"]

    model = wrap(net, params, jnp.zeros((1, 17, 17, 2)))
    assert model.names == ("c1", "relu1", "pool1", "c2", "relu2", "flatten1", "d")
    fields = dict(zip(("c1", "r1", "p1", "c2", "r2"), (model.fields[n] for n in model.names[:5])))
    assert fields == {n: reference.fields[n] for n in fields}
    assert model.layer("c2").geometry["dilation"] == (2, 2) and model.layer("pool1").geometry["stride"] == (2, 2)
    assert [n for n in model.names if model.layer(n).windowed] == ["c1", "pool1", "c2"]
    assert [n for n in model.names if model.layer(n).rectifier] == ["relu1", "relu2"]


def test_class_models_and_inversion_of_a_wrapped_model_equal_the_tuples(five):
    """The optimization only calls ``apply``: a wrapped twin gives the tuple's images."""
    models_, x = five
    reference, ref_params = models_["tuple"]
    model, params = models_["equinox"]
    key = jax.random.key(3)
    want, _ = synthesis.class_models(reference, ref_params, [0, 4], "yosinski1", key=key, steps=5)
    got, _ = synthesis.class_models(model, params, [0, 4], "yosinski1", key=key, steps=5)
    assert float(jnp.abs(want.images).max()) > 0 and rel_err(got.images, want.images) < 1e-5
    want, _ = synthesis.invert(reference, ref_params, x, "relu2", key=key, steps=5)
    got, _ = synthesis.invert(model, params, x, "relu2", key=key, steps=5)
    assert rel_err(got.images, want.images) < 1e-5
