"""jaxvis.saliency against finite differences, per-example autodiff, Python loops and
hand-made maps."""

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


def test_smoothgrad_is_the_mean_gradient_over_its_documented_noise(tiny):
    params, x = tiny
    key, samples, noise = jax.random.key(7), 4, 0.2
    got = saliency.smoothgrad(TINY, params, x, np.array([0, 1, 2, 0]), key, samples=samples, noise=noise, chunk=2)
    spread = np.asarray(x.max(axis=(1, 2, 3)) - x.min(axis=(1, 2, 3))).reshape(-1, 1, 1, 1)
    noisy = np.concatenate([x + noise * spread * jax.random.normal(k, x.shape) for k in jax.random.split(key, samples)])
    each = saliency.gradients(TINY, params, noisy, np.tile([0, 1, 2, 0], samples))
    assert rel_err(got, np.asarray(each).reshape(samples, *x.shape).mean(axis=0)) < 1e-5


def test_integrated_gradients_equals_a_riemann_sum_and_is_complete(tiny):
    params, x = tiny
    classes, steps = np.array([2, 0, 1, 1]), 512
    baseline = saliency.black(TINY, x)
    got = saliency.integrated_gradients(TINY, params, x, classes, steps=steps, chunk=128)
    alphas = ((np.arange(steps) + 0.5) / steps).reshape(-1, 1, 1, 1, 1)
    path = (np.asarray(baseline) + alphas * np.asarray(x - baseline)).reshape(-1, *x.shape[1:])
    each = saliency.gradients(TINY, params, path, np.tile(classes, steps))
    riemann = np.asarray(each).reshape(steps, *x.shape).mean(axis=0) * np.asarray(x - baseline)
    assert rel_err(got, riemann) < 1e-5

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


def test_bad_input_is_a_value_error_naming_it(tiny):
    params, x = tiny
    with pytest.raises(ValueError, match=r"class out of range: expected 0 <= class < 3, got \[3\]"):
        saliency.saliency(TINY, params, x, np.array([0, 1, 2, 3]))
    with pytest.raises(ValueError, match=r"shape \(N,\) or shape \(N, K\) with N = 4 images, got shape \(3,\)"):
        saliency.gradients(TINY, params, x, np.array([0, 1, 2]))
    with pytest.raises(ValueError, match="unknown rule 'guidded'"):
        saliency.saliency(TINY, params, x, 0, rule="guidded")
    with pytest.raises(ValueError, match=r"maps must have shape \(4, 6, 6\)"):
        saliency.deletion(TINY, params, x, np.zeros((4, 6, 5)), np.zeros(4, int))
    with pytest.raises(ValueError, match="steps must be an integer >= 1, got 0"):
        saliency.insertion(TINY, params, x, np.zeros((4, 6, 6)), np.zeros(4, int), steps=0)
    with pytest.raises(ValueError, match="chunk must be an integer >= 1, got 0"):
        saliency.smoothgrad(TINY, params, x, 0, jax.random.key(0), chunk=0)
    with pytest.raises(ValueError, match=r"baseline must be finite"):
        saliency.deletion(TINY, params, x, np.zeros((4, 6, 6)), np.zeros(4, int),
                          baseline_NHWC=np.full(x.shape[1:], np.nan))
    with pytest.raises(ValueError,
                       match=r"baseline must broadcast to the images' shape \(4, 6, 6, 2\).*got shape \(5, 6, 6, 2\)"):
        saliency.integrated_gradients(TINY, params, x, 0, baseline_NHWC=np.zeros((5, *x.shape[1:]), np.float32))
    with pytest.raises(ValueError, match="unknown connectivity 6"):
        saliency.largest_component(np.ones((3, 3), bool), 6)
