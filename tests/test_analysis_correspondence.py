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


M = models.build("mnist_cnn", widths=(2, 2), hidden=4)
P = M.init(jax.random.key(0))
X = np.zeros((2, 28, 28, 1), np.float32)
BOX = [[0, 0, 3, 3], [5, 5, 3, 3]]
INK = np.zeros((2, 28, 28), np.float32)
INK[:, 10:14, 10:14] = 1.0
DOT = np.zeros((1, 28, 28), np.float32)
DOT[0, 3, 3] = 1.0


def consistency(x=X, boxes=BOX, layers=("relu2",), **kwargs):
    return correspondence.consistency(M, P, x, boxes, layers, **kwargs)


BAD_INPUTS = [
    # consistency: images, boxes, layers, fill
    ("consistency-one-image", lambda: consistency(X[:1], BOX[:1]),
     r"correspondence needs at least two images \(N, H, W, C\), got shape \(1, 28, 28, 1\)"),
    ("consistency-three-channels", lambda: consistency(np.zeros((2, 28, 28, 3), np.float32)),
     r"images must have 1 channels \(NHWC, channels last\), got shape \(2, 28, 28, 3\)"),
    ("consistency-nan-pixel", lambda: consistency(np.where(np.arange(28)[:, None] == 3, np.nan, X)),
     r"images must be finite, got 56 non-finite values \(first at index \(0, 0, 3, 0\): nan\)"),
    ("consistency-one-image-unbatched", lambda: consistency(X[0]),
     r"images must be a batch of shape \(N, 28, 28, 1\) \(NHWC\), got an array of rank 3"),
    ("consistency-uint8-pixels", lambda: consistency(np.zeros((2, 28, 28, 1), np.uint8)),
     r"images must be floating point \(normalized with model.normalize\), got dtype uint8"),
    ("consistency-box-sizes-differ", lambda: consistency(boxes=[[0, 0, 3, 3], [0, 0, 4, 3]]),
     r"all boxes must have the same size, got sizes \[\(3, 3\), \(4, 3\)\]"),
    ("consistency-box-outside", lambda: consistency(boxes=[[0, 0, 3, 3], [26, 0, 3, 3]]),
     r"boxes must lie inside the 28x28 image with positive size, got \[\[26, 0, 3, 3\]\]"),
    ("consistency-box-negative-corner", lambda: consistency(boxes=[[0, -1, 3, 3], [0, 0, 3, 3]]),
     r"boxes must lie inside the 28x28 image with positive size, got \[\[0, -1, 3, 3\]\]"),
    ("consistency-box-empty", lambda: consistency(boxes=[[0, 0, 0, 3], [4, 4, 0, 3]]),
     r"boxes must lie inside the 28x28 image with positive size, got \[\[0, 0, 0, 3\], \[4, 4, 0, 3\]\]"),
    ("consistency-one-box-for-two-images", lambda: consistency(boxes=BOX[:1]),
     r"need one box per image: 2 images, got 1 boxes"),
    ("consistency-fractional-box", lambda: consistency(boxes=[[0, 0, 3, 3], [2.5, 0, 3, 3]]),
     r"boxes must hold whole pixels, got \[2.5\]"),
    ("consistency-three-numbers-a-box", lambda: consistency(boxes=[[0, 0, 3], [0, 0, 3]]),
     r"boxes must have shape \(N, 4\) or \(R, N, 4\), got \(2, 3\)"),
    ("consistency-text-boxes", lambda: consistency(boxes=[["0", "0", "3", "3"]] * 2),
     r"boxes must be numbers, 4 per box \(top, left, height, width\), got <U1 of shape \(2, 4\)"),
    ("consistency-nan-box", lambda: consistency(boxes=[[0, 0, 3, 3], [np.nan, 0, 3, 3]]),
     r"boxes must be finite, got 1 non-finite values"),
    ("consistency-repeats-differ-in-size", lambda: consistency(boxes=[[[0, 0, 3, 3]] * 2, [[0, 0, 4, 4]] * 2]),
     r"all boxes must have the same size, got sizes \[\(3, 3\), \(4, 4\)\]"),
    ("consistency-no-layers", lambda: consistency(layers=[]),
     r"correspondence needs at least one layer to compare, got none"),
    ("consistency-unknown-layer", lambda: consistency(layers=["relu2", "relu9"]), r"unknown layer of mnist_cnn 'relu9'"),
    ("consistency-nan-fill", lambda: consistency(fill=np.nan), r"fill must be finite, got 1 non-finite values"),
    ("consistency-fill-per-channel", lambda: consistency(fill=[0.0, 0.1, 0.2]),
     r"fill must be one value or one per channel \(1\), got shape \(3,\)"),
    # random_control and the box makers
    ("random-control-zero-height", lambda: correspondence.random_control(M, P, X, (0, 4), ["relu2"]),
     r"box size must be two whole numbers >= 1 \(height, width\), got \(0, 4\)"),
    ("random-control-box-too-tall", lambda: correspondence.random_control(M, P, X, (30, 4), ["relu2"]),
     r"a 30x4 box does not fit in a 28x28 image"),
    ("random-control-no-repeats", lambda: correspondence.random_control(M, P, X, (3, 3), ["relu2"], repeats=0),
     r"repeats must be an integer >= 1, got 0"),
    ("random-control-negative-seed", lambda: correspondence.random_control(M, P, X, (3, 3), ["relu2"], seed=-1),
     r"seed must be an integer >= 0 or a numpy.random.Generator, got int -1"),
    ("random-control-text-seed", lambda: correspondence.random_control(M, P, X, (3, 3), ["relu2"], seed="a"),
     r"seed must be an integer >= 0 or a numpy.random.Generator, got str 'a'"),
    ("random-control-one-image", lambda: correspondence.random_control(M, P, X[:1], (3, 3), ["relu2"]),
     r"correspondence needs at least two images"),
    ("random-boxes-one-side", lambda: correspondence.random_boxes((28,), (3, 3), 2, 1),
     r"image_hw must be \(height, width\), two integers >= 1, got \(28,\)"),
    ("random-boxes-no-count", lambda: correspondence.random_boxes((28, 28), (3, 3), 0, 1),
     r"count must be an integer >= 1, got 0"),
    ("random-boxes-fractional-repeats", lambda: correspondence.random_boxes((28, 28), (3, 3), 2, 2.5),
     r"repeats must be an integer >= 1, got 2.5"),
    ("random-boxes-fractional-box", lambda: correspondence.random_boxes((28, 28), (2.5, 3), 2, 1),
     r"box size must be two whole numbers >= 1 \(height, width\), got \(2.5, 3\)"),
    ("random-boxes-three-sides", lambda: correspondence.random_boxes((28, 28), (2, 3, 4), 2, 1),
     r"box size must be two whole numbers >= 1 \(height, width\), got \(2, 3, 4\)"),
    ("part-boxes-no-ink", lambda: correspondence.part_boxes(np.stack([INK[0], INK[0] * 0]), (4, 4)),
     r"images \[1\] have no ink \(no pixel above 0.5\)"),
    ("part-boxes-no-ink-in-band", lambda: correspondence.part_boxes(DOT, (4, 4), rows=(0.5, 1.0)),  # one ink row: no lower half
     r"images \[0\] have no ink in the band rows=\(0.5, 1.0\), cols=\(0.0, 1.0\) of their ink's bounding box"),
    ("part-boxes-reversed-rows", lambda: correspondence.part_boxes(INK, (4, 4), rows=(0.5, 0.2)),
     r"rows must be a band \(start, stop\) with 0 <= start < stop <= 1, got \(0.5, 0.2\)"),
    ("part-boxes-cols-beyond-one", lambda: correspondence.part_boxes(INK, (4, 4), cols=(0.0, 1.5)),
     r"cols must be a band \(start, stop\) with 0 <= start < stop <= 1, got \(0.0, 1.5\)"),
    ("part-boxes-threshold-above-one", lambda: correspondence.part_boxes(INK, (4, 4), threshold=1.5),
     r"threshold must be a finite number >= 0 and <= 1, got float 1.5"),
    ("part-boxes-one-image-unbatched", lambda: correspondence.part_boxes(INK[0], (4, 4)),
     r"pixels must have shape \(N, H, W\) or \(N, H, W, C\), got \(28, 28\)"),
    ("part-boxes-int32-pixels", lambda: correspondence.part_boxes(INK.astype(np.int32), (4, 4)),
     r"pixels must be uint8 in \[0, 255\] or floats in \[0, 1\], got dtype int32"),
    ("part-boxes-nan-pixels", lambda: correspondence.part_boxes(np.where(INK > 0, np.nan, INK), (4, 4)),
     r"pixels must be finite, got 32 non-finite values"),
    ("part-boxes-no-images", lambda: correspondence.part_boxes(INK[:0], (4, 4)),
     r"pixels must hold at least one image, got shape \(0, 28, 28\)"),
    ("part-boxes-box-too-wide", lambda: correspondence.part_boxes(INK, (4, 29)),
     r"a 4x29 box does not fit in a 28x28 image"),
    ("ink-boxes-no-repeats", lambda: correspondence.ink_boxes(INK, (3, 3), 0), r"repeats must be an integer >= 1, got 0"),
    ("ink-boxes-fractional-seed", lambda: correspondence.ink_boxes(INK, (3, 3), 2, seed=1.5),
     r"seed must be an integer >= 0 or a numpy.random.Generator, got float 1.5"),
    ("ink-boxes-box-too-tall", lambda: correspondence.ink_boxes(INK, (30, 4), 1), r"a 30x4 box does not fit"),
    ("check-boxes-count", lambda: correspondence.check_boxes(BOX, (28, 28), 3),
     r"need one box per image: 3 images, got 2 boxes"),
    ("pairwise-hamming-vector", lambda: correspondence.pairwise_hamming(np.ones(4)),
     r"eps_ND must be a matrix \(N, D\) of one change per row, got shape \(4,\)"),
    ("pairwise-hamming-nan", lambda: correspondence.pairwise_hamming(np.array([[1.0, np.nan], [1.0, 2.0]])),
     r"eps_ND must be finite, got 1 non-finite values \(first at index \(0, 1\): nan\)"),
    ("occlude-batch", lambda: correspondence.occlude(X, np.array([0, 0, 3, 3]), 0.0),
     r"occlude takes one image \(H, W, C\) and one box \(top, left, height, width\), got shapes \(2, 28, 28, 1\) "
     r"and \(4,\)"),
    ("occlude-three-numbers", lambda: correspondence.occlude(X[0], np.array([0, 0, 3]), 0.0),
     r"occlude takes one image .*got shapes \(28, 28, 1\) and \(3,\)"),
]


@pytest.mark.parametrize("call, message", [case[1:] for case in BAD_INPUTS], ids=[case[0] for case in BAD_INPUTS])
def test_bad_input_is_a_value_error_saying_expected_and_given(call, message):
    with pytest.raises(ValueError, match=message):
        call()
