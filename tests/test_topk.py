"""Streaming top-k against brute force; cropped projections against full-image ones."""

import jax
import numpy as np
import pytest
from conftest import rel_err

from jaxvis import models, topk
from jaxvis.project import Select, project


@pytest.fixture(scope="module")
def setup():
    model = models.build("mnist_cnn", widths=(8, 8), hidden=16)
    params = model.init(jax.random.key(0))
    images = np.random.default_rng(0).integers(0, 256, (37, 28, 28, 1), dtype=np.uint8)
    images[5] = images[30]  # an exact tie across batches: the earlier image must win
    _, trace = jax.jit(model.apply)(params, model.normalize(images))
    return model, params, images, {k: np.asarray(v) for k, v in trace.activations.items()}


def brute_force(act_NHWC, k, one_per_image):
    n, h, w, c = act_NHWC.shape
    out = []
    for ch in range(c):
        entries = [(-act_NHWC[i, r, q, ch], i, r, q) for i in range(n) for r in range(h) for q in range(w)]
        entries.sort()  # by value descending, then image, row, column: the documented tie rule
        if one_per_image:
            seen, kept = set(), []
            for e in entries:
                if e[1] not in seen:
                    seen.add(e[1])
                    kept.append(e)
            entries = kept
        out.append(entries[:k])
    return np.array(out)  # (C, k, 4)


@pytest.mark.parametrize("one_per_image", [False, True])
def test_top_k_equals_brute_force(setup, one_per_image):
    model, params, images, acts = setup
    batches = [images[i:i + 8] for i in range(0, len(images), 8)]  # last batch is smaller
    got = topk.top_k(model, params, batches, ["relu2", "pool2"], k=9, one_per_image=one_per_image)
    for layer in ("relu2", "pool2"):
        expected = brute_force(acts[layer], 9, one_per_image)
        t = got[layer]
        np.testing.assert_allclose(np.asarray(t.value), -expected[..., 0], rtol=1e-6)
        np.testing.assert_array_equal(np.asarray(t.image), expected[..., 1])
        np.testing.assert_array_equal(np.asarray(t.row), expected[..., 2])
        np.testing.assert_array_equal(np.asarray(t.col), expected[..., 3])


def test_cropped_projections_equal_full_projections_cropped(setup):
    model, params, images, _ = setup
    layer = "relu3"
    top = topk.top_k(model, params, [images], layer, k=4)
    got = topk.project_top_k(model, params, images, top, layer, chunk=5)
    field = model.receptive_field(layer)
    kinds = set()
    for c in range(8):
        for j in range(4):
            i, r, q = int(top.image[c, j]), int(top.row[c, j]), int(top.col[c, j])
            full = np.asarray(project(model, params, model.normalize(images[i]), layer, Select.unit(c, r, q)))
            top_, left, h, w = field.window(r, q)
            m = 20
            padded = np.pad(full, ((m, m), (m, m), (0, 0)))
            expected = padded[top_ + m:top_ + m + h, left + m:left + m + w]
            assert rel_err(got.projection[c, j], expected) < 1e-5
            image = np.pad(np.asarray(model.normalize(images[i])), ((m, m), (m, m), (0, 0)))
            np.testing.assert_allclose(got.patch[c, j], image[top_ + m:top_ + m + h, left + m:left + m + w], atol=1e-6)
            kinds.add(top_ >= 0 and left >= 0 and top_ + h <= 28 and left + w <= 28)
    assert kinds == {True, False}, "both the field-only path and the border path must be exercised"


def test_receptive_field_crop_windows_hand_computed(setup):
    model, _, _, _ = setup
    # relu3: conv1 (3, pad 1), conv2 (3, pad 1), pool 2, conv3 (3, pad 1): size 10, jump 2, start -4
    assert model.receptive_field("relu3").window(5, 0) == (6, -4, 10, 10)
    small = topk.field_model(model, "relu3")
    assert small.input_shape == (10, 10, 1) and small.shapes["relu3"][:2] == (1, 1)


def test_bad_requests_are_rejected(setup):
    model, params, images, _ = setup
    with pytest.raises(ValueError, match=r"fc5.*no spatial maps"):
        topk.top_k(model, params, [images], "fc5")
    with pytest.raises(ValueError, match=r"k=40 is larger than the 37 positions of layer 'pool2'"):
        topk.top_k(model, params, [images], "pool2", k=40, one_per_image=True)
    with pytest.raises(ValueError, match=r"empty dataset"):
        topk.top_k(model, params, [], "pool2")
    with pytest.raises(ValueError, match=r"1 channels"):
        topk.top_k(model, params, [np.zeros((2, 28, 28, 3), np.float32)], "pool2")


@pytest.mark.parametrize("layer", ["pool1", "relu2"])
def test_border_windows_are_exact_with_strides_and_ceil_pooling(layer):
    # zfnet's stride-2 conv1 and conv2 and ceil-mode pools; 71 leaves H - S odd multiples
    model = models.build("zfnet", channels=1, mean=(0.5,), std=(0.25,), input_size=71, num_classes=3,
                         widths=(6, 8, 8, 8, 8), hidden=8)
    params = model.init(jax.random.key(3))
    images = np.random.default_rng(4).integers(0, 256, (6, 71, 71, 1)).astype(np.uint8)
    top = topk.top_k(model, params, [images], layer, k=3)
    got = topk.project_top_k(model, params, images, top, layer, chunk=4)
    field, win = model.receptive_field(layer), topk.window_model(model, layer)
    assert (71 - win.input_shape[0]) % field.jump[0] == 0 and win.input_shape[0] >= min(71, field.size[0] + field.jump[0] - 1)
    assert win.input_shape[0] < 71  # pool1: 15x15, relu2: 39x39 windows of the 71x71 image
    border = 0
    for c in range(model.shapes[layer][-1]):
        for j in range(3):
            i, r, q = int(top.image[c, j]), int(top.row[c, j]), int(top.col[c, j])
            full = np.asarray(project(model, params, model.normalize(images[i]), layer, Select.unit(c, r, q)))
            top_, left, h, w = field.window(r, q)
            m = h
            expected = np.pad(full, ((m, m), (m, m), (0, 0)))[top_ + m:top_ + m + h, left + m:left + m + w]
            assert rel_err(got.projection[c, j], expected) < 1e-5
            border += not (top_ >= 0 and left >= 0 and top_ + h <= 71 and left + w <= 71)
    assert border > 0


def test_border_windows_hold_the_field_inside_the_image_on_aligned_grids():
    # vgg16 conv5_3: field 196, jump 16 on 224; a corner unit needs only a 112 window
    model = models.build("vgg16", input_size=224)
    field = model.receptive_field("conv5_3")
    rows, cols = np.array([0, 0, 13, 6, 13]), np.array([0, 13, 13, 6, 2])
    tops, lefts = field.start[0] + rows * field.jump[0], field.start[1] + cols * field.jump[1]
    s_h, s_w, side_h, side_w = topk.border_windows(model, "conv5_3", tops, lefts, fractions=(0.5, 0.7))
    for v, s, side in ((tops, s_h, side_h), (lefts, s_w, side_w)):
        assert np.all(s % 16 == 0) and np.all((224 - side) % 16 == 0) and np.all(s + side <= 224)
        assert np.all(s <= np.maximum(v, 0)) and np.all(s + side >= np.minimum(v + 196, 224))
        assert np.all((v + 196 < 224) | (s + side == 224))  # a field past the far edge: window ends there
    assert (side_h[0], side_w[0]) == (112, 112) and (side_h[3], side_w[3]) == (224, 224)
    one = topk.border_windows(model, "conv5_3", tops, lefts, fractions=())
    assert np.all(one[2] == 224) and np.all(one[3] == 224)


def test_chunks_pad_only_the_last_call_a_little():
    # the last call rounds up to a multiple of 1/8 of the next power of two: 70 -> 80, 44 -> 48
    calls = list(topk._chunks(np.arange(300), 128))
    assert [len(padded) for _, padded in calls] == [128, 128, 48]
    assert [len(part) for part, _ in calls] == [128, 128, 44]
    np.testing.assert_array_equal(calls[-1][1], np.r_[256:300, [299] * 4])
    assert [len(padded) for _, padded in topk._chunks(np.arange(70), 256)] == [80]
    groups = np.arange(14).reshape(7, 2)
    assert [padded.shape for _, padded in topk._chunks(groups, 4)] == [(4, 2), (3, 2)]
