"""Streaming top-k against brute force; cropped projections against full-image ones."""

import dataclasses

import jax
import jax.numpy as jnp
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


def test_top_k_records_what_it_saw_and_stays_a_pytree(setup):
    model, params, images, _ = setup
    tops = topk.top_k(model, params, [images[:20], images[20:]], ["relu2", "pool2"], k=3)
    top = tops["pool2"]
    assert (top.layer, top.model, top.input_shape, top.num_images) == ("pool2", "mnist_cnn", (28, 28, 1), 37)
    assert tops["relu2"].layer == "relu2"
    assert len(jax.tree.leaves(top)) == 4  # the arrays; the record is static metadata
    doubled = jax.jit(lambda t: jax.tree.map(lambda a: 2 * a, t))(top)
    assert (doubled.layer, doubled.num_images) == ("pool2", 37)
    np.testing.assert_array_equal(doubled.row, 2 * np.asarray(top.row))
    rows = jax.vmap(lambda t: t.row.sum())(top)  # vmap over maps keeps the record
    np.testing.assert_array_equal(rows, np.asarray(top.row).sum(1))


def oracle_top_k(value_CNP, k, first=0):
    """NumPy's answer: per map, the ``k`` largest of ``(N, P)`` candidates (image, position
    ``row * 3 + col`` of a 3-wide map) by value descending, then image, row and column, as
    ``(value, image, row, col)`` each ``(C, k)``; missing entries are ``-inf`` at image -1."""
    c, n, positions = value_CNP.shape
    image, pos = np.meshgrid(np.arange(n) + first, np.arange(positions), indexing="ij")
    out = np.full((4, c, k), -np.inf)
    out[1:] = 0
    out[1] = -1
    for ch in range(c):
        v = value_CNP[ch].ravel()
        order = np.lexsort((pos.ravel() % 3, pos.ravel() // 3, image.ravel(), -v))[:k]
        out[:, ch, :len(order)] = v[order], image.ravel()[order], pos.ravel()[order] // 3, pos.ravel()[order] % 3
    return out[0].astype(np.float32), *out[1:].astype(np.int32)


def as_top(arrays, first, num_images, layer="relu2", model="mnist_cnn"):
    return topk.TopK(*arrays, layer, model, (28, 28, 1), num_images, first)


@pytest.mark.parametrize("sizes", [(7, 0, 5, 1, 11), (24,), (1, 1, 1, 1)])
def test_merge_of_parts_equals_numpy_argsort_with_ties(sizes):
    # values in {0, ..., 4}: most candidates tie; a part of one image has 6 candidates, fewer than k
    rng = np.random.default_rng(len(sizes))
    n, k = sum(sizes), 10
    value_CNP = rng.integers(0, 5, (3, n, 6)).astype(np.float32)
    value_CNP[1, -1, :] = 9  # the strongest map entries all in the last part
    starts = np.cumsum((0, *sizes))
    parts = [as_top(oracle_top_k(value_CNP[:, a:b], k, first=a), int(a), int(b - a))
             for a, b in zip(starts[:-1], starts[1:])]
    merged = topk.merge(parts)
    expected = oracle_top_k(value_CNP, k)
    for field, want in zip(("value", "image", "row", "col"), expected):
        np.testing.assert_array_equal(np.asarray(getattr(merged, field)), want, err_msg=field)
    assert (merged.first, merged.num_images, merged.layer) == (0, n, "relu2")


@pytest.mark.parametrize("one_per_image", [False, True])
def test_top_k_in_parts_equals_one_stream_and_resumes_from_its_files(setup, tmp_path, one_per_image):
    model, params, images, acts = setup
    calls = []

    def read(start, stop):
        calls.append((start, stop))
        return [images[i:min(i + 4, stop)] for i in range(start, stop, 4)]

    options = dict(k=9, one_per_image=one_per_image)
    stream = topk.top_k(model, params, [images[i:i + 4] for i in range(0, 37, 4)], ["relu2", "pool2"], **options)
    got = topk.top_k_parts(model, params, read, 37, ["relu2", "pool2"], part_size=8, folder=tmp_path, tag="t",
                           **options)
    assert calls == [(0, 8), (8, 16), (16, 24), (24, 32), (32, 37)]
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"part_0000{i}.npz" for i in range(5)]
    for layer in ("relu2", "pool2"):
        expected = brute_force(acts[layer], 9, one_per_image)
        for field in ("value", "image", "row", "col"):
            np.testing.assert_array_equal(np.asarray(getattr(got[layer], field)),
                                          np.asarray(getattr(stream[layer], field)), err_msg=f"{layer} {field}")
        np.testing.assert_array_equal(np.asarray(got[layer].image), expected[..., 1])
        assert (got[layer].first, got[layer].num_images) == (0, 37)
    (tmp_path / "part_00003.npz").unlink()  # a run killed before that part was written
    calls.clear()
    again = topk.top_k_parts(model, params, read, 37, ["relu2", "pool2"], part_size=8, folder=tmp_path, tag="t",
                             **options)
    assert calls == [(24, 32)]  # the finished parts are read, not computed
    for layer in ("relu2", "pool2"):
        for field in ("value", "image", "row", "col"):
            np.testing.assert_array_equal(np.asarray(getattr(again[layer], field)),
                                          np.asarray(getattr(got[layer], field)), err_msg=f"{layer} {field}")


def test_parts_of_other_settings_or_damaged_are_refused(setup, tmp_path):
    model, params, images, _ = setup

    def read(start, stop):
        return [images[start:stop]]

    topk.top_k_parts(model, params, read, 20, "relu2", k=3, part_size=10, folder=tmp_path, tag="a")
    with pytest.raises(ValueError, match=r"part .*part_00000.npz was computed with other settings \(k, tag\); use "
                                         r"another folder, or delete .* to start again"):
        topk.top_k_parts(model, params, read, 20, "relu2", k=4, part_size=10, folder=tmp_path, tag="b")
    (tmp_path / "part_00001.npz").write_bytes(b"not a zip")
    (tmp_path / "part_00000.npz").unlink()
    with pytest.raises(ValueError, match=r"part .*part_00001.npz is damaged \(.*\); delete it and run again"):
        topk.top_k_parts(model, params, read, 20, "relu2", k=3, part_size=10, folder=tmp_path, tag="a")


def test_projections_spread_over_one_process_equal_project_top_k(setup):
    model, params, images, _ = setup
    top = topk.top_k(model, params, [images], "relu3", k=2)
    got = topk.project_top_k_spread(model, params, images, top, "relu3", maps=[5, 1])
    want = topk.project_top_k(model, params, images, top, "relu3", maps=[5, 1])
    for field in ("maps", "projection", "patch", "window"):
        np.testing.assert_array_equal(getattr(got, field), getattr(want, field), err_msg=field)


@pytest.fixture(scope="module")
def bad(setup):
    model, params, images, _ = setup
    images = images[:10]
    other = models.build("mnist_cnn", widths=(8, 8), hidden=16, input_shape=(32, 32, 1))
    return dict(m=model, p=params, images=images, x=np.asarray(model.normalize(images)),
                relu3=topk.top_k(model, params, [images], "relu3", k=2),
                zfnet=dataclasses.replace(topk.top_k(model, params, [images], "relu3", k=2), model="zfnet"),
                other=topk.top_k(other, other.init(jax.random.key(0)), [np.zeros((10, 32, 32, 1), np.uint8)], "relu3",
                                 k=2))


def project_top(b, images=None, top="relu3", layer="relu3", **kwargs):
    top = b[top] if isinstance(top, str) else top
    return topk.project_top_k(b["m"], b["p"], b["images"] if images is None else images, top, layer, **kwargs)


def top_of(b, batches, layers="relu3", **kwargs):
    return topk.top_k(b["m"], b["p"], batches, layers, **kwargs)


BAD_INPUTS = [
    # top_k
    ("top-k-dense-layer", lambda b: top_of(b, [b["images"]], "fc5"),
     r"layer 'fc5' of mnist_cnn has no spatial maps \(output shape \(16,\)\)"),
    ("top-k-unknown-layer", lambda b: top_of(b, [b["images"]], ["relu2", "relu9"]),
     r"unknown layer of mnist_cnn 'relu9'; expected one of .*Did you mean"),
    ("top-k-no-layers", lambda b: top_of(b, [b["images"]], []), r"top_k needs at least one layer, got none"),
    ("top-k-k-zero", lambda b: top_of(b, [b["images"]], k=0), r"k must be an integer >= 1, got 0"),
    ("top-k-k-fraction", lambda b: top_of(b, [b["images"]], k=2.5), r"k must be an integer >= 1, got 2.5"),
    ("top-k-k-bool", lambda b: top_of(b, [b["images"]], k=True), r"k must be an integer >= 1, got True"),
    ("top-k-k-above-images", lambda b: top_of(b, [b["images"]], "pool2", k=11, one_per_image=True),
     r"k=11 is larger than the 10 positions of layer 'pool2' in the data \(10 images\)"),
    ("top-k-k-above-positions", lambda b: top_of(b, [b["images"][:1]], "pool2", k=50),
     r"k=50 is larger than the 49 positions of layer 'pool2' in the data \(1 images x 7x7\)"),
    ("top-k-no-batches", lambda b: top_of(b, []), r"top_k got an empty dataset \(no batches\)"),
    ("top-k-three-channels", lambda b: top_of(b, [np.zeros((2, 28, 28, 3), np.float32)]),
     r"images must have 1 channels \(NHWC, channels last\), got shape \(2, 28, 28, 3\)"),
    ("top-k-nan-pixel", lambda b: top_of(b, [b["x"][:2], np.where(np.arange(28)[:, None, None] == 5, np.nan, b["x"][2:4])]),
     r"images must be finite, got 56 non-finite values \(first at index \(0, 5, 0, 0\): nan\)"),
    ("top-k-integer-pixels", lambda b: top_of(b, [np.zeros((2, 28, 28, 1), np.int32)]),
     r"images must be floating point \(normalized with model.normalize\), got dtype int32"),
    ("top-k-wrong-size", lambda b: top_of(b, [np.zeros((2, 27, 28, 1), np.float32)]),
     r"images must have shape \(N, 28, 28, 1\), got \(2, 27, 28, 1\)"),
    ("top-k-array-not-batches", lambda b: top_of(b, b["x"]),
     r"batches must be an iterable of image batches \(N, 28, 28, 1\), e.g. \[images\].*got ndarray of shape "
     r"\(10, 28, 28, 1\)"),
    ("top-k-string-batches", lambda b: top_of(b, "images/"), r"batches must be an iterable of image batches.*got str"),
    ("top-k-one-image-batches", lambda b: top_of(b, list(b["x"])),
     r"images must be a batch of shape \(N, 28, 28, 1\) \(NHWC\), got an array of rank 3"),
    ("top-k-one-per-image-string", lambda b: top_of(b, [b["images"]], one_per_image="yes"),
     r"one_per_image must be True or False, got str 'yes'"),
    ("top-k-negative-first", lambda b: top_of(b, [b["images"]], first=-1),
     r"first must be None or an integer >= 0, got -1"),
    # merge and top_k_parts
    ("merge-not-a-list", lambda b: topk.merge(b["relu3"]), r"parts must be a non-empty list of TopK results"),
    ("merge-empty", lambda b: topk.merge([]), r"parts must be a non-empty list of TopK results .*got list"),
    ("merge-gap", lambda b: topk.merge([b["relu3"], b["relu3"]]),
     r"parts must be consecutive, in dataset order: part 0 ends before image 10, but part 1 starts at image 0"),
    ("merge-other-layer", lambda b: topk.merge([b["relu3"], dataclasses.replace(b["relu3"], layer="relu2", first=10)]),
     r"parts must be one layer's results with one k: part 0 holds mnist_cnn layer 'relu3' \(8, 2\), part 1 "
     r"mnist_cnn layer 'relu2' \(8, 2\)"),
    ("parts-not-callable", lambda b: topk.top_k_parts(b["m"], b["p"], [b["images"]], 10, "relu3"),
     r"read must be a function read\(start, stop\) giving batches, got list"),
    ("parts-zero-size", lambda b: topk.top_k_parts(b["m"], b["p"], lambda i, j: [b["images"][i:j]], 10, "relu3",
                                                   part_size=0), r"part_size must be an integer >= 1, got 0"),
    ("parts-k-above-images", lambda b: topk.top_k_parts(b["m"], b["p"], lambda i, j: [b["images"][i:j]], 10, "pool2",
                                                        k=11, one_per_image=True),
     r"k=11 is larger than the 10 positions of layer 'pool2' in the data \(10 images\)"),
    ("parts-read-short", lambda b: topk.top_k_parts(b["m"], b["p"], lambda i, j: [b["images"][i:j - 1]], 10, "relu3",
                                                    k=2), r"read\(0, 10\) gave 9 images; expected 10"),
    ("project-top-one-part", lambda b: project_top(b, top=dataclasses.replace(b["relu3"], first=10)),
     r"top holds images 10 to 19 only, one part of a dataset; expected the whole dataset's \(join the parts with "
     r"topk.merge\)"),
    # project_top_k: the TopK must belong to this layer, model and images
    ("project-top-other-layer", lambda b: project_top(b, layer="relu4"),
     r"top holds the activations of layer 'relu3'; expected layer 'relu4', the layer to project"),
    ("project-top-other-model", lambda b: project_top(b, top="zfnet"),
     r"top was computed with model 'zfnet' on inputs \(28, 28, 1\); expected model 'mnist_cnn' on inputs "
     r"\(28, 28, 1\)"),
    ("project-top-other-input", lambda b: project_top(b, top="other"),
     r"top was computed with model 'mnist_cnn' on inputs \(32, 32, 1\); expected model 'mnist_cnn' on inputs "
     r"\(28, 28, 1\)"),
    ("project-top-fewer-images", lambda b: project_top(b, images=b["images"][:9]),
     r"top_k saw 10 images; expected the same images here, got 9"),
    ("project-top-more-images", lambda b: project_top(b, images=np.concatenate([b["images"]] * 2)),
     r"top_k saw 10 images; expected the same images here, got 20"),
    ("project-top-not-a-topk", lambda b: project_top(b, top={"value": 1}), r"top must be a TopK from topk.top_k, got dict"),
    ("project-top-map-too-large", lambda b: project_top(b, maps=[1, 8]),
     r"maps of layer 'relu3' out of range: expected 0 <= .* < 8, got \[8\]"),
    ("project-top-map-negative", lambda b: project_top(b, maps=[-1]),
     r"maps of layer 'relu3' out of range: expected 0 <= .* < 8, got \[-1\]"),
    ("project-top-map-fraction", lambda b: project_top(b, maps=[0.5]),
     r"maps of layer 'relu3' must be an integer, got float64"),
    ("project-top-no-maps", lambda b: project_top(b, maps=[]),
     r"maps must be a non-empty list of map indices of layer 'relu3', got \[\]"),
    ("project-top-maps-matrix", lambda b: project_top(b, maps=[[0, 1]]),
     r"maps must be a non-empty list of map indices of layer 'relu3', got \[\[0, 1\]\]"),
    ("project-top-chunk-zero", lambda b: project_top(b, chunk=0), r"chunk must be None or an integer >= 1, got 0"),
    ("project-top-chunk-fraction", lambda b: project_top(b, chunk=1.5),
     r"chunk must be None or an integer >= 1, got 1.5"),
    ("project-top-budget-nan", lambda b: project_top(b, memory_budget=float("nan")),
     r"memory_budget must be a finite number >= 1, got float nan"),
    ("project-top-budget-negative", lambda b: project_top(b, memory_budget=-1e9),
     r"memory_budget must be a finite number >= 1, got float -1000000000.0"),
    ("project-top-unknown-rule", lambda b: project_top(b, rule="guidded"),
     r"unknown rule 'guidded'; expected one of .*Did you mean 'guided'"),
    ("project-top-unknown-layer", lambda b: project_top(b, layer="relu33"), r"unknown layer of mnist_cnn 'relu33'"),
    ("project-top-dense-layer", lambda b: project_top(b, layer="fc5"), r"layer 'fc5' of mnist_cnn has no spatial maps"),
    ("project-top-nan-images", lambda b: project_top(b, images=np.full((10, 28, 28, 1), np.nan, np.float32)),
     r"images must be finite, got \d+ non-finite values"),
    ("project-top-three-channels", lambda b: project_top(b, images=np.zeros((10, 28, 28, 3), np.float32)),
     r"images must have 1 channels \(NHWC, channels last\), got shape \(\d+, 28, 28, 3\)"),
    ("project-top-generator", lambda b: project_top(b, images=(i for i in b["images"])),
     r"images must be an array or a jaxvis.data.Dataset, got generator"),
    # the receptive-field networks and windows
    ("field-model-unknown-layer", lambda b: topk.field_model(b["m"], "relu0"), r"unknown layer of mnist_cnn 'relu0'"),
    ("field-model-dense-layer", lambda b: topk.field_model(b["m"], "fc5"), r"layer 'fc5' of mnist_cnn has no spatial"),
    ("window-model-zero-side", lambda b: topk.window_model(b["m"], "relu3", (0, 5)),
     r"side must be \(height, width\), integers from 1 to the image's \(28, 28\), got \(0, 5\)"),
    ("window-model-side-too-large", lambda b: topk.window_model(b["m"], "relu3", (30, 30)),
     r"side must be \(height, width\).*\(28, 28\), got \(30, 30\)"),
    ("window-model-side-fraction", lambda b: topk.window_model(b["m"], "relu3", (10.5, 10)),
     r"side must be \(height, width\).*got \(10.5, 10\)"),
    ("border-windows-zero-fraction", lambda b: topk.border_windows(b["m"], "relu3", [0], [0], fractions=(0,)),
     r"fractions must be numbers in \(0, 1\], got \(0,\)"),
    ("border-windows-fraction-above-one", lambda b: topk.border_windows(b["m"], "relu3", [0], [0], fractions=(1.5,)),
     r"fractions must be numbers in \(0, 1\], got \(1.5,\)"),
    ("border-windows-lengths-differ", lambda b: topk.border_windows(b["m"], "relu3", [0, 2], [0]),
     r"tops and lefts must be integer vectors of one length, one entry per unit, got int64 \(2,\) and int64 \(1,\)"),
    ("border-windows-fractional-tops", lambda b: topk.border_windows(b["m"], "relu3", [0.5], [0]),
     r"tops and lefts must be integer vectors.*got float64 \(1,\) and int64 \(1,\)"),
]


@pytest.mark.parametrize("call, message", [case[1:] for case in BAD_INPUTS], ids=[case[0] for case in BAD_INPUTS])
def test_bad_input_is_a_value_error_saying_expected_and_given(bad, call, message):
    with pytest.raises(ValueError, match=message):
        call(bad)


def test_project_top_k_on_a_residual_network_equals_project_cropped():
    """Over an addition the padding-free field network would misalign a branch and its
    shortcut: a graph's units run on windows with paddings. Oracle: ``project`` on the whole
    image with the unit selected, cropped to the unit's receptive field."""
    model = models.build("resnet18", width=8, num_classes=10, input_size=64)
    params = model.init(jax.random.key(0))
    x = np.random.default_rng(0).normal(size=(3, 64, 64, 3)).astype(np.float32)
    x[0] = 0  # image 0 textured in the centre only, so strong units lie inside and across the border
    x[0, 16:48, 16:48] = 3 * np.random.default_rng(1).normal(size=(32, 32, 3))
    x = jnp.asarray(x)
    layer = "layer1.0.relu"  # 27 px fields: some inside the 64 px image, some across its border
    top = topk.top_k(model, params, [x], layer, k=3, one_per_image=True)
    patches = topk.project_top_k(model, params, x, top, layer, maps=[1, 6], rule="guided")
    field, inside = model.receptive_field(layer), 0
    for m, c in enumerate([1, 6]):
        for r in range(3):
            i, row, col = (int(np.asarray(a)[c, r]) for a in (top.image, top.row, top.col))
            whole = np.asarray(project(model, params, x[i], layer, Select.unit(c, row, col), rule="guided"))
            t, l = field.start[0] + row * field.jump[0], field.start[1] + col * field.jump[1]
            inside += t >= 0 and l >= 0 and t + field.size[0] <= 64 and l + field.size[1] <= 64
            padded = np.pad(whole, ((field.size[0],) * 2, (field.size[1],) * 2, (0, 0)))
            want = padded[t + field.size[0]:t + 2 * field.size[0], l + field.size[1]:l + 2 * field.size[1]]
            assert np.abs(want).max() > 0
            assert np.abs(patches.projection[m, r] - want).max() <= 1e-5 * np.abs(want).max()
    assert 0 < inside < 6  # both kinds of unit were projected
