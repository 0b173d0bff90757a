"""Saliency (gradient, guided, deconvnet), SmoothGrad, integrated gradients, class models,
inversion and invariance on a residual network, against an oracle that shares nothing with
``Model.apply``: torchvision's ResNet-18 forward pass written out here in ``jax.numpy`` on
the same weights, differentiated with ``jax.grad`` (the guided and deconvnet rules as
ReLUs with their own VJPs, written here too).

The network is ``resnet18``'s first two stages with one block each, four wide, on 16x16
images: every block kind is there (an identity shortcut, a strided shortcut through a 1x1
convolution and batch norm), and each method compiles in a few seconds.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import rel_err
from jax import lax
from test_resnet import random_params

from jaxvis import models, saliency, synthesis
from jaxvis.analysis import invariance

# resnet18's first two stages, one block each: a block with an identity shortcut, one with a strided
# 1x1 convolution and batch norm; as resnet18 (2, 2, 2, 2) but a quarter of the layers to compile
NET = models._resnet("resnet", (1, 1), 1, num_classes=5, input_size=16, channels=3, mean=None, std=None, width=4)


def _relu_with_backward(backward):
    @jax.custom_vjp
    def relu(x):
        return jnp.maximum(x, 0)

    relu.defvjp(lambda x: (jnp.maximum(x, 0), x), lambda x, g: (backward(x, g),))
    return relu


RELUS = {"gradient": jax.nn.relu,  # Springenberg et al.'s rules, Simonyan Sec. 4
         "guided": _relu_with_backward(lambda x, g: jnp.where(x > 0, jnp.maximum(g, 0), 0.0)),
         "deconvnet": _relu_with_backward(lambda x, g: jnp.maximum(g, 0))}


def _conv(x, kernel, stride, pad):
    return lax.conv_general_dilated(x, kernel, (stride, stride), ((pad, pad), (pad, pad)),
                                    dimension_numbers=("NHWC", "HWIO", "NHWC"))


def _bn(x, p):
    per_channel = {leaf: v.reshape(1, 1, 1, -1) for leaf, v in p.items()}
    return (x - per_channel["mean"]) / jnp.sqrt(per_channel["var"] + 1e-5) * per_channel["scale"] + per_channel["bias"]


@functools.partial(jax.jit, static_argnames=("blocks", "relu"))
def by_hand(params, x_NHWC, blocks=(1, 1), relu=jax.nn.relu):
    """torchvision's ``ResNet.forward`` with BasicBlocks (``blocks`` per stage), in eval
    mode: the logits and the outputs of ``relu`` and each block (``layerS.B.relu``)."""
    outputs = {}
    h = relu(_bn(_conv(x_NHWC, params["conv1"]["kernel"], 2, 3), params["bn1"]))
    outputs["relu"] = h
    h = lax.reduce_window(h, -jnp.inf, lax.max, (1, 3, 3, 1), (1, 2, 2, 1), ((0, 0), (1, 1), (1, 1), (0, 0)))
    for stage, count in enumerate(blocks, start=1):
        for block in range(count):
            name, stride = f"layer{stage}.{block}", 2 if stage > 1 and block == 0 else 1
            y = relu(_bn(_conv(h, params[f"{name}.conv1"]["kernel"], stride, 1), params[f"{name}.bn1"]))
            y = _bn(_conv(y, params[f"{name}.conv2"]["kernel"], 1, 1), params[f"{name}.bn2"])
            if f"{name}.downsample.0" in params:
                h = _bn(_conv(h, params[f"{name}.downsample.0"]["kernel"], stride, 0), params[f"{name}.downsample.1"])
            h = relu(y + h)
            outputs[f"{name}.relu"] = h
    return h.mean(axis=(1, 2)) @ params["fc"]["kernel"] + params["fc"]["bias"][None], outputs


@functools.partial(jax.jit, static_argnames="relu")
def hand_gradients(params, x_NHWC, classes_N, relu=jax.nn.relu):
    """``dS_c/dx`` of each image for its class, through :func:`by_hand`."""
    score = lambda x, c: by_hand(params, x[None], relu=relu)[0][0, c]
    return jax.vmap(jax.grad(score))(x_NHWC, jnp.asarray(classes_N))


@pytest.fixture(scope="module")
def net():
    params = random_params(NET, seed=11)
    x = jax.random.normal(jax.random.key(12), (3, 16, 16, 3))
    return params, x


def test_the_hand_written_forward_is_the_models(net):
    params, x = net
    logits, trace = NET.apply(params, x)
    expected, outputs = by_hand(params, x)
    assert rel_err(logits, expected) < 1e-5
    for name in ("relu", "layer1.0.relu", "layer2.0.relu"):
        assert rel_err(trace.activations[name], outputs[name]) < 1e-5, name


@pytest.mark.parametrize("rule", ["gradient", "guided", "deconvnet"])
def test_saliency_rules_equal_jax_grad_of_the_hand_written_resnet(net, rule):
    params, x = net
    classes_NK = np.array([[0, 4], [2, 2], [3, 1]])
    got = saliency.gradients(NET, params, x, classes_NK, rule=rule)
    for k in range(2):
        expected = hand_gradients(params, x, classes_NK[:, k], relu=RELUS[rule])
        assert float(jnp.abs(expected).max()) > 0
        err = rel_err(got[:, k], expected)
        assert err < 1e-5, f"{rule}, class column {k}: {err:.2e}"


def test_smoothgrad_is_the_mean_hand_gradient_over_its_documented_noise(net):
    params, x = net
    key, samples, noise, classes = jax.random.key(5), 4, 0.1, np.array([1, 0, 4])
    got = saliency.smoothgrad(NET, params, x, classes, key, samples=samples, noise=noise)
    spread = (x.max(axis=(1, 2, 3)) - x.min(axis=(1, 2, 3))).reshape(-1, 1, 1, 1)
    expected = sum(hand_gradients(params, x + noise * spread * jax.random.normal(k, x.shape), classes)
                   for k in jax.random.split(key, samples)) / samples
    assert rel_err(got, expected) < 1e-5


def test_integrated_gradients_is_the_hand_riemann_sum_and_nearly_complete(net):
    params, x = net
    classes, steps = np.array([3, 1, 0]), 32
    got = saliency.integrated_gradients(NET, params, x, classes, steps=steps)
    baseline = saliency.black(NET, x)
    mean = sum(hand_gradients(params, baseline + (s + 0.5) / steps * (x - baseline), classes)
               for s in range(steps)) / steps
    assert rel_err(got, mean * (x - baseline)) < 1e-5
    scores = lambda v: by_hand(params, v)[0][np.arange(3), classes]
    gap = scores(x) - scores(baseline)
    assert float(jnp.abs(got.sum(axis=(1, 2, 3)) - gap).max()) < 0.05 * float(jnp.abs(gap).max())


def hand_loop(objective, x0_NHWC, s: synthesis.Settings):
    """Gradient descent with momentum on ``u = 255 std x`` (paper units), each item alone,
    with Simonyan's L2 penalty: the loop of synthesis.optimize without its projections."""
    scale = 255 * jnp.asarray(NET.std).reshape(1, 1, -1)
    loss = lambda u, i: objective(u / scale, i) + s.l2 * jnp.sum(u ** 2)
    grad = jax.jit(jax.grad(loss))
    images = []
    for i, x0 in enumerate(x0_NHWC):
        u, velocity = x0 * scale, jnp.zeros_like(x0)
        for lr in s.learning_rates():
            velocity = s.momentum * velocity - lr * grad(u, jnp.int32(i))
            u = u + velocity
        images.append(u / scale)
    return jnp.stack(images)


def test_class_models_take_the_hand_computed_steps(net):
    params, _ = net
    classes = np.array([2, 4])
    s = synthesis.settings("simonyan", steps=4)
    x0 = 0.3 * jax.random.normal(jax.random.key(3), (2, 16, 16, 3))
    run = synthesis.optimize(synthesis.ClassScore(NET), params, x0, jnp.asarray(classes), s)
    expected = hand_loop(lambda x, i: -by_hand(params, x[None])[0][0, jnp.asarray(classes)[i]], x0, s)
    assert float(jnp.abs(expected - x0).max()) > 0.01  # the steps moved the images
    assert rel_err(run.images - x0, expected - x0) < 1e-4

    run, probs = synthesis.class_models(NET, params, classes, steps=4, init_std=20.0)
    scores = by_hand(params, run.images)[0]
    assert rel_err(probs, jax.nn.softmax(scores)[np.arange(2), classes]) < 1e-5


def test_inversion_takes_the_hand_computed_steps_and_reports_the_feature_error(net):
    params, x = net
    layer, s = "layer2.0.relu", synthesis.settings("mahendran", steps=8, alpha_weight=0.0, tv_weight=0.0)
    x, targets = x[:2], by_hand(params, x[:2])[1][layer]
    x0 = 0.5 * jax.random.normal(jax.random.key(4), x.shape)
    run = synthesis.optimize(synthesis.FeatureMatch(NET, layer), params, x0, targets, s)

    def objective(v, i):
        features = by_hand(params, v[None])[1][layer][0]
        return jnp.sum((features - targets[i]) ** 2) / jnp.sum(targets[i] ** 2)

    expected = hand_loop(objective, x0, s)
    assert float(jnp.abs(expected - x0).max()) > 0.01
    assert rel_err(run.images - x0, expected - x0) < 1e-4

    run, error = synthesis.invert(NET, params, x, layer, steps=8, alpha_weight=0.0, tv_weight=0.0)
    features = by_hand(params, run.images)[1][layer]
    norms = lambda v: jnp.sqrt(jnp.sum(v ** 2, axis=(1, 2, 3)))
    assert rel_err(error, norms(features - targets) / norms(targets)) < 1e-5


def test_invariance_equals_a_loop_over_the_hand_written_resnet(net):
    params, _ = net
    pixels = np.random.default_rng(6).uniform(size=(2, 16, 16, 3)).astype(np.float32)
    labels, amounts, layers = np.array([1, 3]), [0.0, 30.0, 90.0], ("relu", "layer2.0.relu")
    result = invariance.measure(NET, params, pixels, labels, "rotate", amounts, layers)
    for i in range(2):
        _, base = by_hand(params, NET.normalize(pixels[i:i + 1]))
        for a, t in enumerate(amounts):
            logits, moved = by_hand(params, NET.normalize(invariance.transform(pixels[i], "rotate", t)[None]))
            for layer in layers:
                d = float(jnp.linalg.norm((moved[layer] - base[layer]).ravel()))
                assert abs(result.distance[layer][i, a] - d) <= 1e-4 * max(d, 1.0), (i, t, layer)
                assert abs(result.relative[layer][i, a] - d / float(jnp.linalg.norm(base[layer]))) <= 1e-4
            probs = jax.nn.softmax(logits[0])
            assert rel_err(result.true_prob[i, a], probs[labels[i]]) < 1e-4
            assert result.predicted[i, a] == int(jnp.argmax(probs))
    assert (result.distance["layer2.0.relu"][:, 1:] > 0).all() and (result.distance["relu"][:, 0] == 0).all()

