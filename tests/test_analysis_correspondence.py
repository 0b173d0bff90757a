"""Correspondence: Delta against a hand-computed case and a direct loop."""

import jax
import numpy as np
import pytest

from jaxvis import models
from jaxvis.analysis import correspondence


def test_pairwise_hamming_hand_computed():
    eps = np.array([[1.0, -2.0, 0.0, 3.0],
                    [2.0, -1.0, 1.0, -1.0],
                    [-1.0, -1.0, 0.0, 3.0]])
    # signs: (+ - 0 +), (+ - + -), (- - 0 +): d01 = 2/4, d02 = 1/4, d12 = 3/4
    expected = np.array([[0, 0.5, 0.25], [0.5, 0, 0.75], [0.25, 0.75, 0]])
    np.testing.assert_allclose(np.asarray(correspondence.pairwise_hamming(eps)), expected)


@pytest.fixture(scope="module")
def small():
    model = models.build("mnist_cnn", widths=(8, 8), hidden=16)
    params = model.init(jax.random.key(0))
    x = np.random.default_rng(0).normal(size=(4, 28, 28, 1)).astype(np.float32)
    return model, params, x


def test_consistency_equals_a_direct_loop(small):
    model, params, x = small
    boxes = np.array([[3, 4, 6, 5], [10, 2, 6, 5], [0, 0, 6, 5], [22, 23, 6, 5]])
    result = correspondence.consistency(model, params, x, boxes, ["relu2", "fc5"], fill=0.5)
    for layer in ("relu2", "fc5"):
        eps = []
        for i, (t, l, h, w) in enumerate(boxes):
            masked = x[i].copy()
            masked[t:t + h, l:l + w] = 0.5
            a = model.apply(params, x[i:i + 1])[1].activations[layer]
            b = model.apply(params, masked[None])[1].activations[layer]
            eps.append(np.sign(np.asarray(a - b).ravel()))
        d = [np.mean(eps[i] != eps[j]) for i in range(4) for j in range(4) if i != j]
        assert result.mean[layer] == pytest.approx(np.mean(d), abs=1e-6)
        assert result.std[layer] == pytest.approx(np.std(d), abs=1e-6)


def test_random_control_boxes_have_the_size_and_stay_inside(small):
    model, params, x = small
    boxes = correspondence.random_boxes((28, 28), (6, 5), 4, 7, seed=1)
    assert boxes.shape == (7, 4, 4) and (boxes[..., 2] == 6).all() and (boxes[..., 3] == 5).all()
    assert (boxes[..., 0] + 6 <= 28).all() and (boxes[..., 1] + 5 <= 28).all() and (boxes[..., :2] >= 0).all()
    result = correspondence.random_control(model, params, x, (6, 5), ["relu2"], repeats=3)
    assert result.pairwise["relu2"].shape == (3 * 4 * 3,)
    assert 0.0 < result.mean["relu2"] < 1.0


def test_bad_masks_name_the_offending_value(small):
    model, params, x = small
    with pytest.raises(ValueError, match=r"at least two images"):
        correspondence.consistency(model, params, x[:1], [[0, 0, 3, 3]], ["relu2"])
    with pytest.raises(ValueError, match=r"same size, got sizes \[\(3, 3\), \(4, 3\)\]"):
        correspondence.consistency(model, params, x[:2], [[0, 0, 3, 3], [0, 0, 4, 3]], ["relu2"])
    with pytest.raises(ValueError, match=r"inside the 28x28 image.*\[26, 0, 3, 3\]"):
        correspondence.consistency(model, params, x[:2], [[0, 0, 3, 3], [26, 0, 3, 3]], ["relu2"])
    with pytest.raises(ValueError, match=r"2 images, got 1 boxes"):
        correspondence.consistency(model, params, x[:2], [[0, 0, 3, 3]], ["relu2"])


def boxes_by_loop(pixels, box_hw, rows, cols, threshold=0.5):
    """part_boxes' rule written pixel by pixel."""
    out = []
    for img in pixels:
        ink = np.argwhere(img > threshold)
        (r0, c0), (r1, c1) = ink.min(0), ink.max(0) + 1
        kept = [(r, c) for r, c in ink if r0 + rows[0] * (r1 - r0) <= r < r0 + rows[1] * (r1 - r0)
                and c0 + cols[0] * (c1 - c0) <= c < c0 + cols[1] * (c1 - c0)]
        cy, cx = np.mean(kept, axis=0)
        top = min(max(int(np.round(cy - (box_hw[0] - 1) / 2)), 0), img.shape[0] - box_hw[0])
        left = min(max(int(np.round(cx - (box_hw[1] - 1) / 2)), 0), img.shape[1] - box_hw[1])
        out.append([top, left, *box_hw])
    return np.array(out)


def test_part_boxes_centre_on_the_band_of_ink():
    img = np.zeros((2, 28, 28), np.float32)
    img[0, 10:13, 20:23] = 1.0  # a 3x3 blob: centroid (11, 21), a 5x5 box starts at (9, 19)
    img[1, 4:6, 8:20] = 1.0     # the bar of a "7": rows 4-5, columns 8-19
    img[1, 6:24, 17:19] = 1.0   # and its stem: rows 6-23, columns 17-18
    boxes = correspondence.part_boxes(img, (5, 5))
    np.testing.assert_array_equal(boxes[0], [9, 19, 5, 5])
    bar = correspondence.part_boxes(img[1:], (4, 8), rows=(0, 0.2))  # rows 4..7 of the 20 ink rows: the bar
    np.testing.assert_array_equal(bar, boxes_by_loop(img[1:], (4, 8), (0, 0.2), (0, 1)))
    rng = np.random.default_rng(0)
    noisy = (rng.uniform(size=(6, 28, 28)) > 0.8).astype(np.float32)
    for rows, cols in (((0.5, 1.0), (0.0, 1.0)), ((0.0, 0.3), (0.2, 0.7))):
        np.testing.assert_array_equal(correspondence.part_boxes(noisy[..., None], (7, 6), rows, cols),
                                      boxes_by_loop(noisy, (7, 6), rows, cols))
    edge = np.zeros((1, 28, 28), np.uint8)
    edge[0, 0, 27] = 255  # one pixel in the corner: the box is moved inside the image
    np.testing.assert_array_equal(correspondence.part_boxes(edge, (8, 8)), [[0, 20, 8, 8]])


def test_ink_boxes_centre_on_ink_pixels_only():
    img = np.zeros((2, 28, 28), np.float32)
    img[0, 5, 7] = 1.0
    img[1, 10, 3] = img[1, 20, 15] = 1.0
    boxes = correspondence.ink_boxes(img, (3, 3), repeats=200, seed=1)
    assert boxes.shape == (200, 2, 4)
    np.testing.assert_array_equal(np.unique(boxes[:, 0], axis=0), [[4, 6, 3, 3]])
    seen, counts = np.unique(boxes[:, 1], axis=0, return_counts=True)
    np.testing.assert_array_equal(seen, [[9, 2, 3, 3], [19, 14, 3, 3]])
    assert 70 < counts[0] < 130  # each of the two ink pixels about half the time


def test_repeated_boxes_pool_the_pairs_of_each_repeat(small):
    model, params, x = small
    boxes = correspondence.random_boxes((28, 28), (5, 6), 4, 3, seed=2)
    pooled = correspondence.consistency(model, params, x, boxes, ["relu2"])
    each = [correspondence.consistency(model, params, x, b, ["relu2"]).pairwise["relu2"] for b in boxes]
    np.testing.assert_allclose(pooled.pairwise["relu2"], np.concatenate(each), atol=1e-7)


def test_bad_parts_and_box_sizes_name_the_offending_value(small):
    model, params, x = small
    with pytest.raises(ValueError, match=r"whole pixels, got \[2.5\]"):
        correspondence.consistency(model, params, x[:2], [[0, 0, 3, 3], [2.5, 0, 3, 3]], ["relu2"])
    with pytest.raises(ValueError, match=r"same size, got sizes \[\(3, 3\), \(4, 4\)\]"):
        correspondence.consistency(model, params, x[:2], [[[0, 0, 3, 3]] * 2, [[0, 0, 4, 4]] * 2], ["relu2"])
    with pytest.raises(ValueError, match=r"shape \(N, 4\) or \(R, N, 4\), got \(2, 3\)"):
        correspondence.consistency(model, params, x[:2], [[0, 0, 3], [0, 0, 3]], ["relu2"])
    with pytest.raises(ValueError, match=r"box size must be two whole numbers >= 1.*\(0, 4\)"):
        correspondence.random_control(model, params, x, (0, 4), ["relu2"])
    with pytest.raises(ValueError, match=r"a 30x4 box does not fit in a 28x28 image"):
        correspondence.ink_boxes(np.ones((2, 28, 28)), (30, 4), 1)
    blank = np.zeros((3, 28, 28))
    blank[0, 3, 3] = blank[2, 5, 5] = 1.0
    with pytest.raises(ValueError, match=r"images \[1\] have no ink"):
        correspondence.part_boxes(blank, (4, 4))
    with pytest.raises(ValueError, match=r"images \[0, 1, 2\] have no ink in the band rows=\(0.5, 1.0\)"):
        correspondence.part_boxes(blank[[0, 0, 2]], (4, 4), rows=(0.5, 1.0))  # 1-pixel ink: no lower half
    with pytest.raises(ValueError, match=r"rows must be a band .* got \(0.5, 0.2\)"):
        correspondence.part_boxes(blank[:1], (4, 4), rows=(0.5, 0.2))
