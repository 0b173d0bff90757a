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
