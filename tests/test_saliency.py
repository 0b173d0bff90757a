"""jaxvis.saliency against finite differences, per-example autodiff, Python loops, a NumPy
Grad-CAM and hand-made maps."""

import collections

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import rel_err

from jaxvis import models, saliency

TINY = models.Model("tiny", (models.conv("conv1", 4, 3, padding=1), models.relu("relu1"),
                             models.max_pool("pool1", 2), models.flatten(), models.dense("fc2", 8),
                             models.relu("relu2"), models.dense("fc3", 3)), (6, 6, 2), mean=(0.2, 0.4), std=(0.5, 0.3))


@pytest.fixture(scope="module")
def tiny():
    params = TINY.init(jax.random.key(0))
    params = jax.tree.map(lambda p: p + 0.05, params)  # non-zero biases: fewer dead units
    x = jax.random.normal(jax.random.key(1), (4, 6, 6, 2))
    return params, x


def test_saliency_equals_central_finite_differences(tiny):
    params, x = tiny
    classes = np.array([0, 2, 1, 2])
    with jax.enable_x64(True):
        p64 = jax.tree.map(lambda a: jnp.asarray(a, jnp.float64), params)
        x64 = jnp.asarray(x, jnp.float64)
        eye_P = jnp.eye(x64[0].size, dtype=jnp.float64).reshape(-1, *x64.shape[1:])
        h = 1e-5
        for n, c in enumerate(classes):
            score = lambda batch: TINY.apply(p64, batch)[0][:, c]
            diff_P = (score(x64[n:n + 1] + h * eye_P) - score(x64[n:n + 1] - h * eye_P)) / (2 * h)
            expected_HW = np.abs(np.asarray(diff_P).reshape(x64.shape[1:])).max(axis=-1)
            got_HW = saliency.saliency(TINY, p64, x64[n:n + 1], c)[0]
            assert rel_err(got_HW, expected_HW) < 1e-6, f"image {n}: {rel_err(got_HW, expected_HW):.2e}"


def test_many_images_and_classes_equal_one_gradient_at_a_time(tiny):
    params, x = tiny
    classes_NK = np.array([[0, 1], [2, 2], [1, 0], [2, 1]])
    got = saliency.gradients(TINY, params, x, classes_NK)
    assert got.shape == (4, 2, 6, 6, 2)
    one = jax.jit(jax.grad(lambda v, c: TINY.apply(params, v[None])[0][0, c]))
    for n in range(4):
        for k in range(2):
            assert rel_err(got[n, k], one(x[n], classes_NK[n, k])) < 1e-5, (n, k)


def test_guided_and_deconvnet_maps_follow_their_formulas():
    # x -> dense W1 -> relu -> dense W2: the backward signal is W1 @ rule(f1, W2[:, c])
    net = models.Model("mlp", (models.flatten(), models.dense("fc1", 5), models.relu("relu1"),
                               models.dense("fc2", 3)), (2, 2, 1))
    params = net.init(jax.random.key(3))
    x = jax.random.normal(jax.random.key(4), (1, 2, 2, 1))
    w1, b1, w2 = (np.asarray(a, np.float64) for a in (params["fc1"]["kernel"], params["fc1"]["bias"],
                                                         params["fc2"]["kernel"]))
    f1 = np.asarray(x, np.float64).reshape(1, 4) @ w1 + b1
    down = w2[:, 1]
    expected = {"gradient": (f1 > 0) * down, "guided": (f1 > 0) * np.maximum(down, 0), "deconvnet": np.maximum(down, 0)}
    for rule, signal in expected.items():
        got = saliency.gradients(net, params, x, 1, rule=rule)
        assert rel_err(got.reshape(4), (w1 @ signal.ravel())) < 1e-5, rule


# One sample of SmoothGrad or integrated gradients over TINY's 4 images and one class: the
# forward pass's layers (conv1, relu1, pool1, flatten, fc2, relu2, fc3) and one cotangent of
# them and of the input, in float32 bytes
TINY_LAYERS = 6 * 6 * 4 * 2 + 3 * 3 * 4 * 2 + 8 * 2 + 3
SAMPLE_BYTES = (TINY_LAYERS + TINY_LAYERS + 6 * 6 * 2) * 4 * 4


@pytest.mark.parametrize("budget, chunks", [(1e9, "one"), (2.5 * SAMPLE_BYTES, "3 of 2, one padded")])
def test_smoothgrad_is_the_mean_gradient_over_its_documented_noise(tiny, budget, chunks):
    params, x = tiny
    key, samples, noise = jax.random.key(7), 5, 0.2
    got = saliency.smoothgrad(TINY, params, x, np.array([0, 1, 2, 0]), key, samples=samples, noise=noise,
                              memory_budget=budget)
    spread = np.asarray(x.max(axis=(1, 2, 3)) - x.min(axis=(1, 2, 3))).reshape(-1, 1, 1, 1)
    noisy = np.concatenate([x + noise * spread * jax.random.normal(k, x.shape) for k in jax.random.split(key, samples)])
    each = saliency.gradients(TINY, params, noisy, np.tile([0, 1, 2, 0], samples))
    err = rel_err(got, np.asarray(each).reshape(samples, *x.shape).mean(axis=0))
    assert err < 1e-5, f"{chunks} chunk(s): {err:.2e}"


@pytest.mark.parametrize("budget, chunks", [(1e9, "one"), (100.5 * SAMPLE_BYTES, "6 of 86, one padded by 4")])
def test_integrated_gradients_equals_a_riemann_sum_and_is_complete(tiny, budget, chunks):
    params, x = tiny
    classes, steps = np.array([2, 0, 1, 1]), 512
    baseline = saliency.black(TINY, x)
    got = saliency.integrated_gradients(TINY, params, x, classes, steps=steps, memory_budget=budget)
    alphas = ((np.arange(steps) + 0.5) / steps).reshape(-1, 1, 1, 1, 1)
    path = (np.asarray(baseline) + alphas * np.asarray(x - baseline)).reshape(-1, *x.shape[1:])
    each = saliency.gradients(TINY, params, path, np.tile(classes, steps))
    riemann = np.asarray(each).reshape(steps, *x.shape).mean(axis=0) * np.asarray(x - baseline)
    err = rel_err(got, riemann)
    assert err < 1e-5, f"{chunks} chunk(s): {err:.2e}"

    scores = lambda v: np.asarray(TINY.apply(params, v)[0])[np.arange(4), classes]
    gap = scores(x) - scores(baseline)
    total = np.asarray(got.sum(axis=(1, 2, 3)))
    assert np.abs(total - gap).max() < 0.01 * np.abs(gap).max(), (total, gap)


def flood_fill_sizes(mask, connectivity):
    """Component sizes by breadth-first search: the oracle for largest_component."""
    steps = [(1, 0), (-1, 0), (0, 1), (0, -1)] + ([(1, 1), (1, -1), (-1, 1), (-1, -1)] if connectivity == 8 else [])
    seen, sizes = np.zeros_like(mask), []
    for start in zip(*np.nonzero(mask)):
        if seen[start]:
            continue
        queue, size = collections.deque([start]), 0
        seen[start] = True
        while queue:
            i, j = queue.popleft()
            size += 1
            for di, dj in steps:
                a, b = i + di, j + dj
                if 0 <= a < mask.shape[0] and 0 <= b < mask.shape[1] and mask[a, b] and not seen[a, b]:
                    seen[a, b] = True
                    queue.append((a, b))
        sizes.append(size)
    return sizes


@pytest.mark.parametrize("connectivity", [4, 8])
def test_largest_component_has_the_size_of_the_largest_flood_fill(connectivity):
    masks = np.random.default_rng(0).random((12, 15, 17)) < 0.45
    got = jax.vmap(lambda m: saliency.largest_component(m, connectivity))(masks)
    for mask, component in zip(masks, np.asarray(got)):
        assert component.sum() == max(flood_fill_sizes(mask, connectivity))
        assert flood_fill_sizes(component, connectivity) == [component.sum()]  # one connected piece
        assert not (component & ~mask).any()


def test_localization_box_on_a_hand_made_map():
    map_HW = np.zeros((20, 30), np.float32)
    map_HW[2:5, 3:6] = 9.0  # strongest but small: 9 pixels
    map_HW[10:16, 12:19] = 5.0  # weaker but large: 42 pixels
    map_HW[16, 19] = 5.0  # touches the large blob only diagonally
    boxes = jax.vmap(lambda m, q: saliency.localization_box(m, q))(np.stack([map_HW, map_HW]), np.array([0.95, 0.99]))
    np.testing.assert_array_equal(boxes[0], [10, 12, 6, 7])  # the 95% quantile is 5: both blobs, the large one wins
    np.testing.assert_array_equal(boxes[1], [2, 3, 3, 3])  # the 99% quantile keeps only the small one
    np.testing.assert_array_equal(saliency.localization_box(map_HW, 0.95, connectivity=8), [10, 12, 7, 8])


def test_deletion_and_insertion_curves_equal_a_python_loop(tiny):
    params, x = tiny
    classes = np.array([0, 1, 2, 1])
    maps = np.array(saliency.saliency(TINY, params, x, classes))
    maps[0, :3] = 0.0  # ties: kept in row-major order
    steps = 5
    deletion = saliency.deletion(TINY, params, x, maps, classes, steps=steps, chunk=2)
    insertion = saliency.insertion(TINY, params, x, maps, classes, steps=steps)
    black = np.asarray(saliency.black(TINY, x))
    apply = jax.jit(TINY.apply)
    for n in range(4):
        order = sorted(range(36), key=lambda p: (-maps[n].ravel()[p], p))
        for s in range(steps + 1):
            chosen = np.zeros(36, bool)
            chosen[order[:round(s * 36 / steps)]] = True
            chosen = chosen.reshape(6, 6, 1)
            for curves, image in ((deletion, np.where(chosen, black[n], x[n])),
                                  (insertion, np.where(chosen, x[n], black[n]))):
                probs = np.asarray(jax.nn.softmax(apply(params, image[None])[0][0]))
                assert abs(float(curves.probabilities[n, s]) - probs[classes[n]]) < 1e-5, (n, s)
    for curves in (deletion, insertion):
        expected = [np.trapezoid(p, curves.fractions) for p in np.asarray(curves.probabilities)]
        np.testing.assert_allclose(curves.area, expected, rtol=1e-5)
    np.testing.assert_allclose(deletion.probabilities[:, 0], insertion.probabilities[:, -1], rtol=1e-5)


# ---------------------------------------------------------------------------------------
# Grad-CAM


def numpy_forward(params, x_HWC):
    """TINY in float64 NumPy: conv1 (3x3, padding 1), relu1, pool1 (2x2), fc2, relu2, fc3.
    Returns conv1's maps and the logits as a function of them."""
    p = {k: {n: np.asarray(v, np.float64) for n, v in d.items()} for k, d in params.items()}
    padded = np.pad(np.asarray(x_HWC, np.float64), ((1, 1), (1, 1), (0, 0)))
    conv = p["conv1"]["bias"] + sum(np.einsum("hwc,co->hwo", padded[i:i + 6, j:j + 6], p["conv1"]["kernel"][i, j])
                                    for i in range(3) for j in range(3))

    def logits(conv_HWC):
        pooled = np.maximum(conv_HWC, 0).reshape(3, 2, 3, 2, 4).max(axis=(1, 3))
        hidden = np.maximum(pooled.reshape(-1) @ p["fc2"]["kernel"] + p["fc2"]["bias"], 0)
        return hidden @ p["fc3"]["kernel"] + p["fc3"]["bias"]

    return conv, logits


def test_grad_cam_at_conv1_equals_a_numpy_grad_cam_with_finite_differences(tiny):
    params, x = tiny
    with jax.enable_x64(True):
        p64 = jax.tree.map(lambda a: jnp.asarray(a, jnp.float64), params)
        got = saliency.grad_cam(TINY, p64, jnp.asarray(x, jnp.float64), "all", layer="conv1")
    assert got.shape == (4, 3, 6, 6)
    h = 1e-6
    for n in range(4):
        conv, logits = numpy_forward(params, x[n])
        steps = h * np.eye(conv.size).reshape(-1, *conv.shape)
        grads_CP = np.stack([(logits(conv + e) - logits(conv - e)) / (2 * h) for e in steps], axis=1)
        weights_CK = grads_CP.reshape(3, *conv.shape).mean(axis=(1, 2))
        expected = np.maximum(np.einsum("ck,hwk->chw", weights_CK, conv), 0)
        assert expected.max() > 0
        assert rel_err(got[n], expected) < 1e-6, f"image {n}: {rel_err(got[n], expected):.2e}"


def test_grad_cam_at_relu1_routes_through_the_first_maximum_of_each_pool_window(tiny):
    # relu1's windows hold ties at 0; max-pool's backward takes the first maximum (row-major)
    params, x = tiny
    got = saliency.grad_cam(TINY, params, x, np.array([[0, 2], [1, 1], [2, 0], [0, 1]]))  # default layer: relu1
    p = {k: {n: np.asarray(v, np.float64) for n, v in d.items()} for k, d in params.items()}
    for n in range(4):
        conv, _ = numpy_forward(params, x[n])
        maps = np.maximum(conv, 0)
        pooled = maps.reshape(3, 2, 3, 2, 4).max(axis=(1, 3))
        hidden = pooled.reshape(-1) @ p["fc2"]["kernel"] + p["fc2"]["bias"]
        for k, c in enumerate(np.array([[0, 2], [1, 1], [2, 0], [0, 1]])[n]):
            d_pooled = (p["fc2"]["kernel"] @ ((hidden > 0) * p["fc3"]["kernel"][:, c])).reshape(3, 3, 4)
            d_maps = np.zeros_like(maps)
            for i, j, ch in np.ndindex(3, 3, 4):
                window = maps[2 * i:2 * i + 2, 2 * j:2 * j + 2, ch].ravel()
                first = int(np.argmax(window))  # NumPy's argmax is the first maximum too
                d_maps[2 * i + first // 2, 2 * j + first % 2, ch] = d_pooled[i, j, ch]
            expected = np.maximum(np.einsum("k,hwk->hw", d_maps.mean(axis=(0, 1)), maps), 0)
            assert rel_err(got[n, k], expected) < 1e-5, (n, c, rel_err(got[n, k], expected))


def test_all_classes_in_chunks_equal_one_class_at_a_time(tiny):
    params, x = tiny
    per_class = (6 * 6 * 4 * 2 + 3 * 3 * 4 + 36 + 8 * 2 + 3) * 4 * 4  # conv1 and the layers above, 4 images
    chunked = saliency.grad_cam(TINY, params, x, "all", layer="conv1", memory_budget=2.5 * per_class)  # 2 + 1
    whole = saliency.grad_cam(TINY, params, x, "all", layer="conv1")
    for n in range(4):
        for c in range(3):
            one = saliency.grad_cam(TINY, params, x[n:n + 1], c, layer="conv1")[0]
            assert rel_err(chunked[n, c], one) < 1e-6 and rel_err(whole[n, c], one) < 1e-6, (n, c)
    with pytest.raises(ValueError, match="too small for one class"):
        saliency.grad_cam(TINY, params, x, "all", layer="conv1", memory_budget=0.9 * per_class)


def test_interpolate_follows_pytorch_align_corners_false_on_hand_made_maps():
    ramp = np.array([[0.0, 1.0]], np.float32)
    np.testing.assert_allclose(saliency.interpolate(ramp, (1, 4)), [[0.0, 0.25, 0.75, 1.0]], atol=1e-7)
    np.testing.assert_allclose(saliency.interpolate(ramp, (1, 4), "nearest"), [[0.0, 0.0, 1.0, 1.0]])
    # 3 -> 7: PyTorch's nearest reads floor(i * 3 / 7); a half-pixel nearest would read 1 at i = 2
    steps = np.array([[0.0, 1.0, 2.0]], np.float32)
    np.testing.assert_array_equal(saliency.interpolate(steps, (1, 7), "nearest"), [[0, 0, 0, 1, 1, 2, 2]])
    square = np.arange(4.0, dtype=np.float32).reshape(2, 2)
    np.testing.assert_allclose(saliency.interpolate(square[None, None], (4, 4))[0, 0, 1],
                               [0.5, 0.75, 1.25, 1.5], atol=1e-7)  # row 1 lies 1/4 of the way to row 2


@pytest.mark.parametrize("layer, upsample", [("relu1", "bilinear"), ("conv1", "nearest")])
def test_guided_grad_cam_is_guided_backprop_times_the_upsampled_map(tiny, layer, upsample):
    params, x = tiny
    classes = np.array([[0, 2], [1, 1], [2, 0], [0, 1]])
    got = saliency.guided_grad_cam(TINY, params, x, classes, layer=layer, upsample=upsample)
    guided = np.asarray(saliency.gradients(TINY, params, x, classes, rule="guided"))
    cams = np.asarray(saliency.grad_cam(TINY, params, x, classes, layer=layer, upsample=upsample))
    assert np.abs(cams).max() > 0 and np.abs(guided).max() > 0
    assert rel_err(got, guided * cams[..., None]) < 1e-5


def test_default_layer_is_the_authors_choice():
    # Selvaraju et al.'s code: relu5_3 of VGG-16, relu5_4 of VGG-19, relu5 of AlexNet
    assert saliency.cam_layer(models.build("vgg16", input_size=32)) == "relu5_3"
    assert saliency.cam_layer(models.build("vgg19", input_size=32)) == "relu5_4"
    assert saliency.cam_layer(models.build("alexnet")) == "relu5"
    assert saliency.cam_layer(models.build("vgg16_bn", input_size=32)) == "relu5_3"  # past bn5_3
    assert saliency.cam_layer(models.build("zfnet")) == "relu5"
    assert saliency.cam_layer(models.build("mnist_cnn")) == "relu4"
    assert saliency.cam_layer(TINY) == "relu1"
    assert saliency.cam_layer(TINY.without("relu1")) == "conv1"


@pytest.mark.parametrize("name, block", [("resnet18", "layer4.1"), ("resnet50", "layer4.2")])
def test_default_layer_of_a_resnet_is_its_last_blocks_output(name, block):
    """torchvision's convention, ``model.layer4[-1]``: the last block's output, after the
    addition of the shortcut and the ReLU (the twin's module of that name is checked
    against Captum in tests/compare/test_gradcam_resnet.py)."""
    model = models.build(name, input_size=64)
    assert model.sources[f"{block}.relu"] == (f"{block}.add",)
    assert saliency.cam_layer(model) == f"{block}.relu"


def test_at_adds_its_delta_where_the_layers_above_read_it(tiny):
    """``apply``'s ``at``: the logits equal the NumPy network's on conv1's maps plus the
    delta; without ``at`` the traced program is the same as before, with it one addition
    more."""
    params, x = tiny
    delta = np.random.default_rng(0).normal(size=(4, 6, 6, 4)).astype(np.float32)
    logits, trace = TINY.apply(params, x, at={"conv1": delta})
    for n in range(4):
        conv, numpy_logits = numpy_forward(params, x[n])
        assert rel_err(logits[n], numpy_logits(conv + delta[n])) < 1e-5
        assert rel_err(trace.activations["conv1"][n], conv + delta[n]) < 1e-5
    plain = jax.make_jaxpr(lambda p, x: TINY.apply(p, x))(params, x).jaxpr.eqns
    seam = jax.make_jaxpr(lambda p, x, d: TINY.apply(p, x, at={"conv1": d}))(params, x, delta).jaxpr.eqns
    assert collections.Counter(e.primitive.name for e in seam) - collections.Counter(
        e.primitive.name for e in plain) == {"add": 1} and len(seam) == len(plain) + 1


# ---------------------------------------------------------------------------------------
# Bad input: every public function, each row (id, call on (params, x), expected message)

MLP = models.Model("mlp", (models.flatten(), models.dense("fc1", 3)), (6, 6, 2))
CONV_ONLY = models.Model("conv-only", (models.conv("conv1", 3, 3, padding=1),), (6, 6, 2))
NAN = np.full((4, 6, 6, 2), np.nan, np.float32)
ZERO_MAPS, ZERO_LABELS = np.zeros((4, 6, 6)), np.zeros(4, int)

BAD_INPUTS = [
    ("gradients: class out of range", lambda p, x: saliency.gradients(TINY, p, x, np.array([0, 1, 2, 3])),
     "class out of range: expected 0 <= class < 3, got [3]"),
    ("gradients: classes shape", lambda p, x: saliency.gradients(TINY, p, x, np.array([0, 1, 2])),
     "shape (N,) or shape (N, K) with N = 4 images, got shape (3,)"),
    ("gradients: float class", lambda p, x: saliency.gradients(TINY, p, x, 1.5), "class must be an integer, got float"),
    ("gradients: unknown rule", lambda p, x: saliency.gradients(TINY, p, x, 0, rule="guidded"),
     "unknown rule 'guidded'; expected one of ['gradient', 'deconvnet', 'guided']. Did you mean 'guided'?"),
    ("gradients: one image, no batch", lambda p, x: saliency.gradients(TINY, p, x[0], 0),
     "images must be a batch of shape (N, 6, 6, 2) (NHWC), got an array of rank 3 with shape (6, 6, 2)"),
    ("gradients: integer images", lambda p, x: saliency.gradients(TINY, p, np.zeros((4, 6, 6, 2), int), 0),
     "images must be floating point (normalized with model.normalize), got dtype int64"),
    ("gradients: channels", lambda p, x: saliency.gradients(TINY, p, x[..., :1], 0),
     "images must have 2 channels (NHWC, channels last), got shape (4, 6, 6, 1) with 1"),
    ("gradients: not class scores", lambda p, x: saliency.gradients(CONV_ONLY, CONV_ONLY.init(jax.random.key(0)), x, 0),
     "conv-only must end in class scores (a flat output), its output has shape (6, 6, 3)"),
    ("saliency: non-finite images", lambda p, x: saliency.saliency(TINY, p, NAN, 0),
     "images must be finite, got 288 non-finite values"),
    ("saliency: classes string", lambda p, x: saliency.saliency(TINY, p, x, "al"),
     "unknown classes 'al'; expected one of ['all']. Did you mean 'all'?"),
    ("to_map: no channel axis", lambda p, x: saliency.to_map(np.float32(1)),
     "attributions must have a channel axis (..., H, W, C), got shape ()"),
    ("smoothgrad: budget below one copy",
     lambda p, x: saliency.smoothgrad(TINY, p, x, 0, jax.random.key(0), memory_budget=0.99 * SAMPLE_BYTES),
     f"memory_budget={0.99 * SAMPLE_BYTES:.3g} bytes is too small for one noisy copy: its forward and backward "
     f"passes over 4 image(s) and 1 class(es) need about {SAMPLE_BYTES:.3g} bytes"),
    ("smoothgrad: budget not a number", lambda p, x: saliency.smoothgrad(TINY, p, x, 0, jax.random.key(0),
                                                                        memory_budget=None),
     "memory_budget must be a finite number of bytes, got None"),
    ("smoothgrad: samples", lambda p, x: saliency.smoothgrad(TINY, p, x, 0, jax.random.key(0), samples=2.5),
     "samples must be an integer >= 1, got 2.5"),
    ("smoothgrad: noise", lambda p, x: saliency.smoothgrad(TINY, p, x, 0, jax.random.key(0), noise=-0.1),
     "noise must be >= 0, got -0.1"),
    ("smoothgrad: key", lambda p, x: saliency.smoothgrad(TINY, p, x, 0, 7),
     "key must be a JAX PRNG key (jax.random.key(seed) or jax.random.PRNGKey(seed)), got int 7"),
    ("integrated_gradients: baseline shape",
     lambda p, x: saliency.integrated_gradients(TINY, p, x, 0, baseline_NHWC=np.zeros((5, 6, 6, 2), np.float32)),
     "baseline must broadcast to the images' shape (4, 6, 6, 2) (one image, or one per image), got shape (5, 6, 6, 2)"),
    ("integrated_gradients: steps", lambda p, x: saliency.integrated_gradients(TINY, p, x, 0, steps=0),
     "steps must be an integer >= 1, got 0"),
    ("integrated_gradients: budget below one step",
     lambda p, x: saliency.integrated_gradients(TINY, p, x, 0, memory_budget=SAMPLE_BYTES - 1),
     "is too small for one step: its forward and backward passes over 4 image(s) and 1 class(es) need about"),
    ("method_maps: unknown method", lambda p, x: saliency.method_maps(TINY, p, x, 0, methods=("gradient", "occlusion")),
     "unknown saliency method 'occlusion'"),
    ("black: channels", lambda p, x: saliency.black(TINY, np.zeros((1, 6, 6, 3), np.float32)),
     "like must have 2 channels (NHWC, channels last), got shape (1, 6, 6, 3) with 3"),
    ("largest_component: connectivity", lambda p, x: saliency.largest_component(np.ones((3, 3), bool), 6),
     "unknown connectivity 6; expected one of [4, 8]"),
    ("largest_component: one axis", lambda p, x: saliency.largest_component(np.ones(9, bool)),
     "mask must have two axes (H, W), got shape (9,)"),
    ("bounding_box: three axes", lambda p, x: saliency.bounding_box(np.ones((2, 3, 3), bool)),
     "mask must have two axes (H, W), got shape (2, 3, 3)"),
    ("localization_box: quantile", lambda p, x: saliency.localization_box(np.ones((3, 3)), 1.5),
     "quantile must be a number in [0, 1], got 1.5"),
    ("localization_box: connectivity", lambda p, x: saliency.localization_box(np.ones((3, 3)), connectivity=5),
     "unknown connectivity 5"),
    ("saliency_ranks: one axis", lambda p, x: saliency.saliency_ranks(np.ones(9)),
     "map must have two axes (H, W), got shape (9,)"),
    ("deletion: maps shape", lambda p, x: saliency.deletion(TINY, p, x, np.zeros((4, 6, 5)), ZERO_LABELS),
     "maps must have shape (4, 6, 6) (one H x W map per image), got (4, 6, 5)"),
    ("deletion: several classes", lambda p, x: saliency.deletion(TINY, p, x, ZERO_MAPS, np.zeros((4, 2), int)),
     "deletion and insertion take one class per image, shape (N,), got (4, 2)"),
    ("deletion: non-finite baseline",
     lambda p, x: saliency.deletion(TINY, p, x, ZERO_MAPS, ZERO_LABELS, baseline_NHWC=NAN[0]),
     "baseline must be finite, got 288 non-finite values"),
    ("insertion: steps", lambda p, x: saliency.insertion(TINY, p, x, ZERO_MAPS, ZERO_LABELS, steps=0),
     "steps must be an integer >= 1, got 0"),
    ("insertion: non-finite maps", lambda p, x: saliency.insertion(TINY, p, x, ZERO_MAPS + np.nan, ZERO_LABELS),
     "maps must be finite, got 144 non-finite values"),
    ("grad_cam: unknown layer", lambda p, x: saliency.grad_cam(TINY, p, x, 0, layer="relu9"),
     "unknown layer of tiny 'relu9'; expected one of ['conv1', 'relu1', 'pool1', 'flatten', 'fc2', 'relu2', "
     "'fc3']"),
    ("grad_cam: layer without maps", lambda p, x: saliency.grad_cam(TINY, p, x, 0, layer="fc2"),
     "layer 'fc2' of tiny has no spatial maps (output shape (8,)); choose one of ['conv1', 'relu1', 'pool1']"),
    ("grad_cam: no classes", lambda p, x: saliency.grad_cam(TINY, p, x, np.zeros((4, 0), int)),
     "classes of shape (N, K) need at least one class per image (K >= 1), got shape (4, 0)"),
    ("grad_cam: class out of range", lambda p, x: saliency.grad_cam(TINY, p, x, -1),
     "class out of range: expected 0 <= class < 3, got [-1]"),
    ("grad_cam: non-finite images", lambda p, x: saliency.grad_cam(TINY, p, NAN, "all"), "images must be finite"),
    ("grad_cam: upsampling mode", lambda p, x: saliency.grad_cam(TINY, p, x, 0, upsample="cubic"),
     "unknown upsampling mode 'cubic'; expected one of [None, 'bilinear', 'nearest']"),
    ("grad_cam: budget not a number", lambda p, x: saliency.grad_cam(TINY, p, x, 0, memory_budget="1e9"),
     "memory_budget must be a finite number of bytes, got '1e9'"),
    ("grad_cam: budget not positive", lambda p, x: saliency.grad_cam(TINY, p, x, 0, memory_budget=0),
     "memory_budget must be > 0, got 0"),
    ("grad_cam: budget below one class", lambda p, x: saliency.grad_cam(TINY, p, x, 0, memory_budget=100),
     "memory_budget=100 bytes is too small for one class: its backward pass over 4 image(s) needs about"),
    ("grad_cam: no convolution", lambda p, x: saliency.grad_cam(MLP, MLP.init(jax.random.key(0)), x, 0),
     "mlp has no convolution with spatial maps for Grad-CAM's default layer; give layer=, one of []"),
    ("guided_grad_cam: no upsampling", lambda p, x: saliency.guided_grad_cam(TINY, p, x, 0, upsample=None),
     "unknown upsampling mode None; expected one of ['bilinear', 'nearest']"),
    ("guided_grad_cam: classes shape", lambda p, x: saliency.guided_grad_cam(TINY, p, x, np.zeros((4, 2, 1), int)),
     "classes must be one index, shape (N,) or shape (N, K) with N = 4 images, got shape (4, 2, 1)"),
    ("interpolate: mode", lambda p, x: saliency.interpolate(np.ones((2, 2)), (4, 4), "area"),
     "unknown upsampling mode 'area'; expected one of ['bilinear', 'nearest']"),
    ("interpolate: size", lambda p, x: saliency.interpolate(np.ones((2, 2)), (4,)), "size must be (H, W), got (4,)"),
    ("interpolate: empty size", lambda p, x: saliency.interpolate(np.ones((2, 2)), (0, 4)),
     "size must be an integer >= 1, got 0"),
    ("interpolate: one axis", lambda p, x: saliency.interpolate(np.ones(4), (4, 4)),
     "maps must have at least two axes (..., h, w), got shape (4,)"),
    ("cam_layer: no convolution", lambda p, x: saliency.cam_layer(MLP), "mlp has no convolution"),
    ("apply: at of another shape", lambda p, x: TINY.apply(p, x, at={"relu1": np.zeros((4, 3, 3, 4))}),
     "at['relu1'] must have the layer's output shape (4, 6, 6, 4), got (4, 3, 3, 4)"),
    ("apply: at names no layer", lambda p, x: TINY.apply(p, x, at={"relu3": np.zeros((4, 6, 6, 4))}),
     "unknown layer of tiny 'relu3'"),
    ("apply: at not a dict", lambda p, x: TINY.apply(p, x, at=np.zeros((4, 6, 6, 4))),
     "at must be a dict {layer: delta}, got ndarray"),
]


@pytest.mark.parametrize("call, message", [row[1:] for row in BAD_INPUTS], ids=[row[0] for row in BAD_INPUTS])
def test_bad_input_is_a_value_error_naming_it(tiny, call, message):
    params, x = tiny
    with pytest.raises(ValueError) as error:
        call(params, x)
    assert message in str(error.value), str(error.value)
