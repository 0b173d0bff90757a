"""Invariance: transforms against exact pixel operations, distances against a direct loop."""

import jax
import numpy as np
import pytest
from conftest import rel_err

from jaxvis import models
from jaxvis.analysis import invariance


@pytest.fixture(scope="module")
def small():
    model = models.build("mnist_cnn", widths=(8, 8), hidden=16)
    params = model.init(jax.random.key(0))
    pixels = np.random.default_rng(0).uniform(size=(5, 28, 28, 1)).astype(np.float32)
    return model, params, pixels, np.array([0, 1, 2, 3, 9])


def test_integer_translation_is_a_shift_with_fill(small):
    img = small[2][0]
    down = np.asarray(invariance.transform(img, "translate_v", 3.0, fill=0.25))
    expected = np.full_like(img, 0.25)
    expected[3:] = img[:-3]
    np.testing.assert_allclose(down, expected, atol=1e-6)
    left = np.asarray(invariance.transform(img, "translate_h", -2.0))
    np.testing.assert_allclose(left[:, :-2], img[:, 2:], atol=1e-6)


def test_quarter_rotation_and_unit_scale_are_exact(small):
    img = small[2][0]
    np.testing.assert_allclose(np.asarray(invariance.transform(img, "rotate", 90.0)), np.rot90(img), atol=1e-5)
    np.testing.assert_allclose(np.asarray(invariance.transform(img, "scale", 1.0)), img, atol=1e-6)
    zoomed = np.asarray(invariance.transform(img, "scale", 2.0))  # centre pixel pair stays between
    np.testing.assert_allclose(zoomed[13:15, 13:15].mean(), img[13:15, 13:15].mean(), atol=0.3)


def test_distances_and_probabilities_equal_a_direct_loop(small):
    model, params, pixels, labels = small
    amounts = [-4.0, 0.0, 2.5]
    result = invariance.measure(model, params, pixels, labels, "translate_h", amounts, ["relu2", "fc5"], chunk=2)
    for i in range(len(pixels)):
        _, base = model.apply(params, model.normalize(pixels[i:i + 1]))
        for a, t in enumerate(amounts):
            moved = np.asarray(invariance.transform(pixels[i], "translate_h", t))
            logits, trace = model.apply(params, model.normalize(moved[None]))
            for layer in ("relu2", "fc5"):
                d = np.linalg.norm(np.asarray(trace.activations[layer] - base.activations[layer]).ravel())
                assert abs(result.distance[layer][i, a] - d) <= 1e-4 * max(d, 1.0)
                norm = np.linalg.norm(np.asarray(base.activations[layer]).ravel())
                assert abs(result.relative[layer][i, a] - d / norm) <= 1e-4
            probs = np.asarray(jax.nn.softmax(logits))[0]
            assert rel_err(result.true_prob[i, a], probs[labels[i]]) < 1e-4
            assert result.predicted[i, a] == probs.argmax()
    assert np.all(result.distance["relu2"][:, 1] == 0)  # amount 0 is the original


def test_bad_amounts_and_families(small):
    model, params, pixels, labels = small
    with pytest.raises(ValueError, match=r"scale amounts must be > 0.*\[0.0, -1.0\]"):
        invariance.measure(model, params, pixels, labels, "scale", [0.0, -1.0, 2.0], ["relu2"])
    with pytest.raises(ValueError, match=r"unknown transform family 'shear'"):
        invariance.measure(model, params, pixels, labels, "shear", [1.0], ["relu2"])
    with pytest.raises(ValueError, match=r"label out of range"):
        invariance.measure(model, params, pixels, labels + 1, "rotate", [1.0], ["relu2"])
    with pytest.raises(ValueError, match=r"labels must have shape \(\d+,\), one per image, got \(1,\)"):
        invariance.measure(model, params, pixels, labels[:1], "rotate", [1.0], ["relu2"])
    with pytest.raises(ValueError, match=r"pixels must hold at least one image"):
        invariance.measure(model, params, pixels[:0], labels[:0], "rotate", [1.0], ["relu2"])
    with pytest.raises(ValueError, match=r"chunk must be an integer >= 1, got 0"):
        invariance.measure(model, params, pixels, labels, "rotate", [1.0], ["relu2"], chunk=0)


def test_translations_that_leave_the_view_and_non_finite_amounts_are_refused(small):
    model, params, pixels, labels = small
    with pytest.raises(ValueError, match=r"translate_v amounts must lie in \(-28, 28\) pixels.*\[28.0, -30.0\]"):
        invariance.measure(model, params, pixels, labels, "translate_v", [0.0, 28.0, -30.0, 27.5], ["relu2"])
    with pytest.raises(ValueError, match=r"rotate amounts must be finite, got 1 non-finite"):
        invariance.measure(model, params, pixels, labels, "rotate", [0.0, np.nan], ["relu2"])
    with pytest.raises(ValueError, match=r"scale: give at least one amount"):
        invariance.check_amounts("scale", [])
    with pytest.raises(ValueError, match=r"unknown layer of mnist_cnn 'fc7'"):
        invariance.measure(model, params, pixels, labels, "rotate", [1.0], ["fc7"])


M = models.build("mnist_cnn", widths=(2, 2), hidden=4)
P = M.init(jax.random.key(0))
PIXELS = np.full((2, 28, 28, 1), 0.5, np.float32)
LABELS = np.array([3, 7])


def measure(pixels=PIXELS, labels=LABELS, family="rotate", amounts=(10.0,), layers=("relu2",), **kwargs):
    return invariance.measure(M, P, pixels, labels, family, amounts, layers, **kwargs)


BAD_INPUTS = [
    ("scale-not-positive", lambda: measure(family="scale", amounts=[0.0, -1.0, 2.0]),
     r"scale amounts must be > 0 \(a zoom factor\), got \[0.0, -1.0\]"),
    ("unknown-family", lambda: measure(family="shear"),
     r"unknown transform family 'shear'; expected one of \['translate_v', 'translate_h', 'scale', 'rotate'\]"),
    ("family-typo", lambda: measure(family="rotat"), r"unknown transform family 'rotat'.*Did you mean 'rotate'"),
    ("label-out-of-range", lambda: measure(labels=np.array([3, 10])),
     r"label out of range: expected 0 <= label < 10, got \[10\]"),
    ("label-fraction", lambda: measure(labels=np.array([3.5, 1.0])), r"label must be an integer, got float64"),
    ("labels-one-for-two", lambda: measure(labels=LABELS[:1]),
     r"labels must have shape \(2,\), one per image, got \(1,\)"),
    ("no-images", lambda: measure(pixels=PIXELS[:0], labels=LABELS[:0]),
     r"pixels must hold at least one image, got shape \(0, 28, 28, 1\)"),
    ("chunk-zero", lambda: measure(chunk=0), r"chunk must be an integer >= 1, got 0"),
    ("chunk-fraction", lambda: measure(chunk=2.5), r"chunk must be an integer >= 1, got 2.5"),
    ("translation-leaves-view", lambda: measure(family="translate_h", amounts=[3.0, -28.0]),
     r"translate_h amounts must lie in \(-28, 28\) pixels \(beyond, the whole image leaves the view\), got \[-28.0\]"),
    ("nan-amount", lambda: measure(amounts=[0.0, np.nan]), r"rotate amounts must be finite, got 1 non-finite values"),
    ("no-amounts", lambda: measure(amounts=[]), r"rotate: give at least one amount"),
    ("text-amounts", lambda: measure(amounts=["10"]), r"rotate amounts must be a list of numbers, got <U2 of shape \(1,\)"),
    ("amount-matrix", lambda: measure(amounts=[[1.0, 2.0]]),
     r"rotate amounts must be a list of numbers, got float64 of shape \(1, 2\)"),
    ("unknown-layer", lambda: measure(layers=["fc7"]), r"unknown layer of mnist_cnn 'fc7'"),
    ("no-layers", lambda: measure(layers=[]), r"measure needs at least one layer to compare, got none"),
    ("normalized-not-pixels", lambda: measure(pixels=np.asarray(M.normalize(PIXELS))),
     r"pixels must lie in \[0, 1\] \(before model.normalize\), got values from 1.2 to 1.2"),
    ("int32-pixels", lambda: measure(pixels=np.zeros((2, 28, 28, 1), np.int32)),
     r"pixels must be uint8 in \[0, 255\] or floats in \[0, 1\], got dtype int32"),
    ("three-channels", lambda: measure(pixels=np.zeros((2, 28, 28, 3), np.float32)),
     r"pixels must have 1 channels \(NHWC, channels last\), got shape \(2, 28, 28, 3\)"),
    ("nan-pixel", lambda: measure(pixels=np.where(PIXELS > 0, np.nan, PIXELS)[:, :1].repeat(28, 1)),
     r"pixels must be finite, got 1568 non-finite values"),
    ("fill-above-one", lambda: measure(fill=2.0),
     r"fill \(a pixel value\) must be a finite number >= 0 and <= 1, got float 2.0"),
    ("fill-nan", lambda: measure(fill=np.nan), r"fill \(a pixel value\) must be a finite number >= 0 and <= 1, got float nan"),
    ("transform-unknown-family", lambda: invariance.transform(PIXELS[0], "flip", 1.0),
     r"unknown transform family 'flip'"),
    ("transform-batch", lambda: invariance.transform(PIXELS, "rotate", 1.0),
     r"transform takes one image \(H, W, C\), got shape \(2, 28, 28, 1\)"),
    ("transform-nan-amount", lambda: invariance.transform(PIXELS[0], "rotate", np.nan),
     r"rotate amount must be a finite number, got float nan"),
    ("transform-negative-fill", lambda: invariance.transform(PIXELS[0], "rotate", 1.0, fill=-0.5),
     r"fill \(a pixel value\) must be a finite number >= 0 and <= 1, got float -0.5"),
    ("check-amounts-zero-scale", lambda: invariance.check_amounts("scale", [0]),
     r"scale amounts must be > 0 \(a zoom factor\), got \[0.0\]"),
]


@pytest.mark.parametrize("call, message", [case[1:] for case in BAD_INPUTS], ids=[case[0] for case in BAD_INPUTS])
def test_bad_input_is_a_value_error_saying_expected_and_given(call, message):
    with pytest.raises(ValueError, match=message):
        call()
