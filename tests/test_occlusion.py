"""Occlusion sweeps against a loop of single forward passes, incremental inference against
full re-inference, the patch geometry against hand-computed windows, and bad input
against clear errors."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import rel_err

from test_wrap import TinyLinen, tiny_params, tiny_plain, tiny_tuple

from jaxvis import data, layers as L, models, occlusion
from jaxvis.occlusion import (OcclusionMaps, _chunking, _memory, _plan, captum_attribution, positions, propagate, ssim,
                              summary, sweep)
from jaxvis.figures import occlusion_demo as demo_figures
from jaxvis.wrap import wrap, wrap_linen

PATCH, STRIDE, LAYER = 6, 4, "relu4"  # 7 x 7 positions on 28 x 28; the last row and column are cut to 4


def he_params(model, seed=0):
    """He-normal weights and small random biases, drawn with numpy (model.init's jitted
    initializer takes longer to compile for VGG16 than the test takes to run)."""
    rng = np.random.default_rng(seed)
    shapes = jax.eval_shape(model.init, jax.random.key(0))
    return jax.tree.map(lambda s: jnp.asarray(rng.normal(0, np.sqrt(2 / np.prod(s.shape[:-1])) if len(s.shape) > 1
                                                         else 0.1, s.shape), jnp.float32), shapes)


@pytest.fixture(scope="module")
def mnist():
    model = models.build("mnist_cnn")
    params = he_params(model)
    sample = data.open_dataset("mnist_sample", "test")
    images, labels = next(iter(sample.batches(2)))
    return model, params, np.asarray(model.normalize(images)), labels


@pytest.fixture(scope="module")
def full_maps(mnist):
    model, params, x, labels = mnist
    return sweep(model, params, x, labels, PATCH, STRIDE, fill=0.5, layer=LAYER)


@pytest.fixture(scope="module")
def incremental_maps(mnist):
    model, params, x, labels = mnist
    return sweep(model, params, x, labels, PATCH, STRIDE, fill=0.5, layer=LAYER, method="incremental")


# --- geometry --------------------------------------------------------------------------


@pytest.mark.parametrize("layer,out,start,size,tau,expected", [
    # ceil((P + x - K + 1) / S) and min(ceil((w + K - 1) / S), W_out)
    (models.conv("c", 1, 3, padding=1), 28, 10, 4, None, (9, 6)),          # (1+10-3+1)/1 = 9; 6/1
    (models.conv("c", 1, 7, stride=2, padding=1), 110, 100, 16, None, (48, 11)),  # 95/2 -> 48; 22/2
    (models.max_pool("p", 3, 2, ceil_mode=True), 55, 48, 11, None, (23, 7)),  # 46/2 = 23; 13/2 -> 7
    (models.conv("c", 1, 3, padding=2, dilation=2), 28, 10, 4, None, (8, 8)),  # K = 5: 8/1; 8/1
    (models.max_pool("p", 2), 112, 20, 20, None, (10, 11)),                 # 19/2 -> 10; 21/2 -> 11
    (models.conv("c", 1, 3, padding=1), 28, 0, 4, None, (0, 6)),            # -1 clamped to 0
    (models.conv("c", 1, 3, padding=1), 28, 24, 4, None, (22, 6)),          # 23 clamped to 28 - 6
    (models.conv("c", 1, 3, padding=1), 14, 1, 12, None, (0, 14)),          # the whole map
    (models.conv("c", 1, 3, padding=1), 28, 4, 18, 0.5, (6, 14)),           # 20 capped at 14: 3 + 6 // 2
    (models.relu("r"), 28, 7, 5, None, (7, 5)),
])
def test_propagate_hand_computed(layer, out, start, size, tau, expected):
    (row, col), (height, width) = propagate(layer, (out, out), (start, start), (size, size), tau)
    assert (int(row), height) == expected and (int(col), width) == expected


def test_windows_through_mnist_cnn_hand_computed():
    # 4 -> conv 6 -> conv 8 -> pool ceil(9/2) = 5 -> conv 7 -> conv 9 -> pool ceil(10/2) = 5
    steps = _plan(models.build("mnist_cnn"), (4, 4), None)
    assert [s.size[0] for s in steps if s.windowed] == [6, 8, 5, 7, 9, 5]
    # tau = 0.5 caps at 14, 14, 7, 7, 7 and 4 (half of 28, 28, 14, 14, 14, 7, rounded half up):
    # only conv4 (9) is cut
    assert [s.size[0] for s in _plan(models.build("mnist_cnn"), (4, 4), 0.5) if s.windowed] == [6, 8, 5, 7, 7, 4]


@pytest.mark.parametrize("layer", [
    models.conv("c", 2, 3, padding=1), models.conv("c", 2, 7, stride=2, padding=1),
    models.conv("c", 2, 3, padding=2, dilation=2), models.max_pool("p", 3, 2, ceil_mode=True),
    models.max_pool("p", 2),
])
def test_propagated_window_holds_every_changed_output(layer):
    x = jax.random.normal(jax.random.key(0), (1, 23, 23, 2))
    kernel = jax.random.normal(jax.random.key(1), (*layer.kernel, 2, 2))

    def forward(v):
        if layer.kind == "conv":
            return L.conv2d(v, kernel, None, layer.stride, layer.padding, layer.dilation)
        return L.max_pool(v, layer.kernel, layer.stride, layer.padding, layer.ceil_mode)[0]

    starts = np.arange(23 - 4 + 1)
    rows = np.arange(23)[None, :, None, None]
    occluded = x + 5.0 * ((rows >= starts[:, None, None, None]) & (rows < starts[:, None, None, None] + 4))
    changed = np.abs(np.asarray(jax.jit(forward)(occluded) - forward(x))).max((2, 3)) > 1e-3  # float noise aside
    out = changed.shape[1]
    for start, rows_changed in zip(starts, changed):
        (row, _), (height, _) = propagate(layer, (out, out), (start, 0), (4, 23))
        hit = np.flatnonzero(rows_changed)
        assert hit.min() >= int(row) and hit.max() < int(row) + height, (start, hit, int(row), height)


def test_positions_follow_captum():
    assert positions(28, 6, 4).tolist() == [0, 4, 8, 12, 16, 20, 24]  # the last window cut at 28
    assert positions(28, 5, 3).tolist() == [0, 3, 6, 9, 12, 15, 18, 21, 24]
    assert positions(28, 4, 1).tolist() == list(range(25))
    assert positions(28, 28, 5).tolist() == [0]


# --- the sweep against oracles ---------------------------------------------------------


def test_sweep_equals_a_loop_of_single_forward_passes(mnist, full_maps):
    model, params, x, labels = mnist
    apply = jax.jit(lambda v: model.apply(params, v))
    starts = positions(28, PATCH, STRIDE)
    for n in range(1):
        _, trace = apply(x[n:n + 1])
        act = np.asarray(trace.activations[LAYER][0])
        channel = int(np.argmax(act.reshape(-1, act.shape[-1]).max(0)))
        assert full_maps.channel_N[n] == channel
        for i, r in enumerate(starts):
            for j, c in enumerate(starts):
                occluded = x[n].copy()
                occluded[r:r + PATCH, c:c + PATCH] = 0.5
                logits, trace = apply(occluded[None])
                probs = np.asarray(jax.nn.softmax(logits[0]))
                assert abs(full_maps.prob_NPQ[n, i, j] - probs[labels[n]]) <= 1e-6
                assert full_maps.label_NPQ[n, i, j] == np.argmax(probs)
                total = float(np.asarray(trace.activations[LAYER])[0, :, :, channel].sum())
                assert abs(full_maps.feature_NPQ[n, i, j] - total) <= 1e-5 * abs(total)


def test_attribution_equals_a_direct_loop_over_windows(mnist, full_maps):
    _, _, x, _ = mnist
    starts = positions(28, PATCH, STRIDE)
    drop = full_maps.base_prob_N[:, None, None] - full_maps.prob_NPQ
    expected = np.zeros((len(x), 28, 28))
    for y in range(28):
        for z in range(28):
            covering = [(i, j) for i, r in enumerate(starts) for j, c in enumerate(starts)
                        if r <= y < r + PATCH and c <= z < c + PATCH]
            expected[:, y, z] = np.mean([drop[:, i, j] for i, j in covering], axis=0)
    assert rel_err(full_maps.attribution_NHW, expected) <= 1e-6


def test_uncovered_pixels_get_zero_attribution():
    attribution = captum_attribution(np.ones((1, 2, 2)), np.array([0, 4]), np.array([0, 4]), (2, 2), (6, 6))
    assert attribution[0, 0, 0] == 1 and attribution[0, 2, 2] == 0 and attribution[0, 5, 5] == 1


def test_incremental_equals_full_on_mnist_cnn(full_maps, incremental_maps):
    assert rel_err(incremental_maps.prob_NPQ, full_maps.prob_NPQ) <= 1e-5
    assert rel_err(incremental_maps.feature_NPQ, full_maps.feature_NPQ) <= 1e-5
    assert rel_err(incremental_maps.attribution_NHW, full_maps.attribution_NHW) <= 1e-4  # a difference of the above
    assert (incremental_maps.label_NPQ == full_maps.label_NPQ).all()


@pytest.mark.parametrize("name,overrides,patch,stride,layer", [
    # zfnet at 64: maps 30, 15, 6, 3, 3; vgg16 at 64: 64 down to 2 (tests/integration: 224)
    ("zfnet", dict(input_size=64, widths=(8, 16, 16, 16, 16), hidden=32, num_classes=5), 9, 11, "norm2"),
    ("vgg16", dict(input_size=64, num_classes=10), 16, 24, "relu5_1"),
])
def test_incremental_equals_full(name, overrides, patch, stride, layer):
    model = models.build(name, **overrides)
    params = he_params(model)
    x = jax.random.normal(jax.random.key(1), (1, *model.input_shape))
    labels = np.array([3])
    full, incremental = (sweep(model, params, x, labels, patch, stride, layer=layer, method=method, score="logit")
                         for method in ("full", "incremental"))
    assert rel_err(incremental.score_NPQ, full.score_NPQ) <= 1e-5  # the true-class logit
    assert rel_err(incremental.feature_NPQ, full.feature_NPQ) <= 1e-5
    assert rel_err(incremental.prob_NPQ, full.prob_NPQ) <= 1e-5
    assert (incremental.label_NPQ == full.label_NPQ).all()


def test_chunking_does_not_change_results(mnist, full_maps):
    model, params, x, labels = mnist
    # one position at a time, 25 a call, against 49 positions of two images vmapped at once;
    # XLA:CPU convolves batches of other sizes with other blockings, which round differently
    small = sweep(model, params, x, labels, PATCH, STRIDE, fill=0.5, layer=LAYER, memory_budget=7e6)
    assert rel_err(small.prob_NPQ, full_maps.prob_NPQ) <= 1e-5
    assert rel_err(small.feature_NPQ, full_maps.feature_NPQ) <= 1e-5
    assert (small.label_NPQ == full_maps.label_NPQ).all()


@pytest.mark.parametrize("name,overrides,patch", [("mnist_cnn", {}, 6),
                                                  ("vgg16", dict(input_size=64, num_classes=10), 16)])
def test_memory_kept_counts_what_an_incremental_pass_keeps(name, overrides, patch):
    # oracle: the sizes of the arrays the unoccluded pass really keeps
    model = models.build(name, **overrides)
    params = he_params(model)
    steps = _plan(model, (patch, patch), None)
    x, labels = jnp.zeros((1, *model.input_shape)), jnp.zeros((1,), jnp.int32)
    _, _, kept = occlusion._prepare(model, steps, None, "probability", params, x, labels)
    assert _memory(model, steps, None).kept == 4 * sum(a.size for a in jax.tree.leaves(kept))


def test_images_stacked_in_a_batch_give_the_same_maps(mnist, monkeypatch):
    # a cache-friendly size of one, then two images' 49 positions: images are vmapped two
    # at a time, and the third image of three runs in a padded call
    model, params, x, labels = mnist
    x3, labels3 = np.concatenate([x, x[:1]]), np.concatenate([labels, labels[:1]])
    memory = _memory(model, _plan(model, (PATCH, PATCH), None), LAYER)
    monkeypatch.setattr(occlusion, "_CACHE_SET", 49 * memory.per_batch)
    assert _chunking(3, 49, memory, 2e9, 0, 1)[3] == 1
    reference = sweep(model, params, x3, labels3, PATCH, STRIDE, fill=0.5, layer=LAYER, method="incremental")
    monkeypatch.setattr(occlusion, "_CACHE_SET", 2 * 49 * memory.per_batch)
    assert _chunking(3, 49, memory, 2e9, 0, 1) == (2, 49, 49, 2)
    stacked = sweep(model, params, x3, labels3, PATCH, STRIDE, fill=0.5, layer=LAYER, method="incremental")
    # 98 windows convolved at once round differently from 49 (1.5e-6 apart here)
    assert rel_err(stacked.prob_NPQ, reference.prob_NPQ) <= 1e-5
    assert rel_err(stacked.feature_NPQ, reference.feature_NPQ) <= 1e-5
    assert (stacked.label_NPQ == reference.label_NPQ).all()


# --- wrapped functions -----------------------------------------------------------------


@pytest.fixture(scope="module")
def twins():
    """tests/test_wrap.py's small CNN (12x12x3, 5 classes) as a jaxvis tuple and wrapped, as a
    plain function with ``jnp.maximum`` ReLUs and as a Flax linen module, sharing weights."""
    model = tiny_tuple()
    params = tiny_params(model)
    x = np.random.default_rng(3).normal(size=(2, 12, 12, 3)).astype(np.float32)
    wrapped = {"plain": (wrap(tiny_plain, params, x, name="tiny_plain"), params),
               "linen": wrap_linen(TinyLinen(), {"params": params}, x)}
    return model, params, x, np.array([1, 3]), wrapped


@pytest.mark.parametrize("way", ["plain", "linen"])
def test_full_sweep_of_a_wrapped_function_equals_the_tuples(twins, way):
    model, params, x, labels, wrapped = twins
    twin, twin_params = wrapped[way]
    args = (x, labels, 4, 2)  # 5 x 5 positions
    want = sweep(model, params, *args, fill=0.3, layer="relu2")
    got = sweep(twin, twin_params, *args, fill=0.3, layer="relu2")
    for name in ("prob_NPQ", "score_NPQ", "feature_NPQ", "attribution_NHW", "base_prob_N"):
        assert rel_err(getattr(got, name), getattr(want, name)) <= 1e-6, name
    assert (got.label_NPQ == want.label_NPQ).all() and (got.channel_N == want.channel_N).all()
    # drill-down runs full re-inference too: the same cells chosen, the same values
    want = sweep(model, params, *args, coarse_stride=4, score="logit")
    got = sweep(twin, twin_params, *args, coarse_stride=4, score="logit")
    assert (got.computed_NPQ == want.computed_NPQ).all() and not got.computed_NPQ.all()
    assert rel_err(got.score_NPQ, want.score_NPQ) <= 1e-6


def test_full_sweep_of_a_wrapped_function_equals_a_loop_of_its_forward_passes(twins):
    model, params, x, labels, wrapped = twins
    twin, _ = wrapped["plain"]
    maps = sweep(twin, params, x[:1], labels[:1], 4, 2, fill=0.3, layer="relu2")
    forward = jax.jit(tiny_plain)
    relu2 = jax.jit(lambda v: model.apply(params, v, until="relu2")[0])
    act = np.asarray(relu2(x[:1]))[0]
    channel = int(np.argmax(act.reshape(-1, act.shape[-1]).max(0)))
    assert maps.channel_N[0] == channel
    for i, r in enumerate(positions(12, 4, 2)):
        for j, c in enumerate(positions(12, 4, 2)):
            occluded = x[:1].copy()
            occluded[0, r:r + 4, c:c + 4] = 0.3
            logits = np.asarray(forward(params, occluded), np.float64)[0]
            probs = np.exp(logits - logits.max()) / np.exp(logits - logits.max()).sum()
            assert abs(maps.prob_NPQ[0, i, j] - probs[labels[0]]) <= 1e-6
            assert maps.label_NPQ[0, i, j] == np.argmax(probs)
            total = float(np.asarray(relu2(occluded))[0, :, :, channel].sum())
            assert abs(maps.feature_NPQ[0, i, j] - total) <= 1e-6 * abs(total)


def test_memory_of_a_wrapped_function_is_counted_as_the_tuples(twins):
    # the same layers: the same image, unoccluded pass and convolution packing (the wrapped
    # conv2 reads as many channels as the widest map before it: conv1's 4, its real input);
    # a wrapped position runs to the logits, so its batch holds at least the tuple's
    model, _, _, _, wrapped = twins
    tuple_memory, wrapped_memory = (_memory(m, None, "relu2") for m in (model, wrapped["plain"][0]))
    for name in ("image", "prepare", "prepare_packing", "packing", "per_result"):
        assert getattr(wrapped_memory, name) == getattr(tuple_memory, name), name
    assert wrapped_memory.per_batch >= tuple_memory.per_batch


@pytest.mark.parametrize("kwargs", [dict(method="incremental"), dict(method="incremental", tau=0.5)])
def test_incremental_sweeps_refuse_a_wrapped_function(twins, kwargs):
    _, params, x, labels, wrapped = twins
    with pytest.raises(ValueError, match=r"tiny_plain is a wrapped function, not a jaxvis layer tuple, so that "
                                         r"geometry is not known to the incremental engine. Use method='full'"):
        sweep(wrapped["plain"][0], params, x, labels, 4, 2, **kwargs)


# --- approximations --------------------------------------------------------------------


def test_ssim_hand_computed():
    a = np.arange(49.0).reshape(7, 7) / 48
    # One 7x7 window. Both means are 0.5, so the luminance term is 1. The sample variance
    # of 0..48 is 200 * 49 / 48, so s2 = 204.1667 / 48**2 = 0.0886140 for a, s2 / 4 for
    # b = a / 2 + 0.25, covariance s2 / 2: SSIM = (s2 + C2) / (1.25 s2 + C2), C2 = 0.03**2.
    assert ssim(a, a / 2 + 0.25, data_range=1.0) == pytest.approx((0.0886140 + 0.0009) / (1.25 * 0.0886140 + 0.0009),
                                                                  rel=1e-5)
    assert ssim(a, a) == pytest.approx(1.0)
    # by default the range is the reference's own (here 0.05, as 0.5 for the maps 10 times larger)
    assert ssim(a / 10, a / 20 + 0.025) == pytest.approx(ssim(a, a / 2 + 0.25, data_range=0.5))
    assert ssim(np.ones((7, 7)), np.ones((7, 7))) == pytest.approx(1.0)  # flat: judged at range 0.01


def test_drill_down_computes_the_top_fraction_and_copies_the_rest(mnist, full_maps):
    model, params, x, labels = mnist
    drilled = sweep(model, params, x, labels, PATCH, STRIDE, fill=0.5, coarse_stride=2 * STRIDE, drill_fraction=0.25)
    # 4 x 4 coarse cells of 2 x 2 positions, those of the last row and column cut to 2 or 1;
    # the budget is ceil(0.25 * 16) = 4 full cells' worth, 4 * 3 fine positions, filled from
    # the cells in order of coarse drop (a Python loop here), each position once
    done = drilled.computed_NPQ
    for i in range(len(x)):
        expected = np.zeros((7, 7), bool)
        expected[::2, ::2] = True
        cells = [(r, c) for r in range(0, 7, 2) for c in range(0, 7, 2)]
        drop = [drilled.base_prob_N[i] - drilled.prob_NPQ[i, r, c] for r, c in cells]
        budget = 12
        for k in sorted(range(16), key=lambda k: -drop[k]):
            r, c = cells[k]
            for u, v in ((0, 1), (1, 0), (1, 1)):
                if budget and r + u < 7 and c + v < 7:
                    expected[r + u, c + v] = True
                    budget -= 1
        np.testing.assert_array_equal(done[i], expected)
    assert (done.sum((1, 2)) == 16 + 12).all()
    np.testing.assert_allclose(drilled.prob_NPQ[done], full_maps.prob_NPQ[done], rtol=0, atol=1e-6)
    cell = 2 * (np.arange(7) // 2)  # each fine position's coarse cell, at its top-left position
    copied = full_maps.prob_NPQ[:, cell[:, None], cell[None, :]]
    np.testing.assert_allclose(drilled.prob_NPQ[~done], copied[~done], rtol=0, atol=1e-6)


def test_projective_field_threshold_is_close_to_exact(mnist, incremental_maps):
    model, params, x, labels = mnist
    approx = sweep(model, params, x, labels, PATCH, STRIDE, fill=0.5, layer=LAYER, method="incremental", tau=0.6)
    similarity = ssim(approx.prob_NPQ, incremental_maps.prob_NPQ)
    assert similarity.shape == (2,) and (similarity > 0.5).all() and (similarity <= 1).all()


# --- bad input -------------------------------------------------------------------------


def _sweep(images=None, labels=None, **change):
    """A call of sweep on the mnist fixture: good arguments (4x4 occluder, stride 2) with
    ``change``; ``images`` is a function of the good images."""
    def call(mnist):
        model, params, x, good_labels = mnist
        args = dict(patch=4, stride=2) | change
        return sweep(model, params, x if images is None else images(x), good_labels if labels is None else labels,
                     **args)
    return call


def _nan_at(x, index):
    x = x.copy()
    x[index] = np.nan
    return x


MAP_7x7 = np.arange(49.0).reshape(7, 7)
BAD_INPUTS = [
    # sweep: images and labels
    ("images-rank", _sweep(images=lambda x: x[0]),
     r"images must be a batch of shape \(N, 28, 28, 1\) \(NHWC\), got an array of rank 3 with shape \(28, 28, 1\)"),
    ("images-channels", _sweep(images=lambda x: np.repeat(x, 3, axis=-1)),
     r"images must have 1 channels \(NHWC, channels last\), got shape \(2, 28, 28, 3\) with 3"),
    ("images-size", _sweep(images=lambda x: x[:, :27]),
     r"images must have shape \(N, 28, 28, 1\), got \(2, 27, 28, 1\)"),
    ("images-integer", _sweep(images=lambda x: x.astype(np.int32)),
     r"images must be floating point \(normalized with model.normalize\), got dtype int32"),
    ("images-nan", _sweep(images=lambda x: _nan_at(x, (1, 3, 4, 0))),
     r"images must be finite, got 1 non-finite values \(first at index \(1, 3, 4, 0\): nan\)"),
    ("images-inf", _sweep(images=lambda x: x * np.inf), r"images must be finite, got 1568 non-finite values"),
    ("images-empty", _sweep(images=lambda x: x[:0], labels=np.zeros(0, int)),
     r"images must hold at least one image, got shape \(0, 28, 28, 1\)"),
    ("labels-range", _sweep(labels=np.array([0, 10])), r"label out of range: expected 0 <= label < 10, got \[10\]"),
    ("labels-negative", _sweep(labels=np.array([-1, 0])), r"label out of range: expected 0 <= label < 10, got \[-1\]"),
    ("labels-count", _sweep(labels=np.array([0])), r"labels must have shape \(2,\), one per image, got \(1,\)"),
    ("labels-float", _sweep(labels=np.array([1.5, 2.0])), r"label must be an integer, got float64 value"),
    # sweep: occluder geometry
    ("patch-large", _sweep(patch=29), r"patch \(29, 29\) is larger than the image \(28, 28\)"),
    ("patch-zero", _sweep(patch=0), r"patch must be > 0, got 0"),
    ("patch-float", _sweep(patch=2.5), r"patch must be an integer or a pair of integers, got 2.5"),
    ("patch-bool", _sweep(patch=True), r"patch must be an integer or a pair of integers, got True"),
    ("patch-triple", _sweep(patch=(2, 2, 2)), r"patch must be an integer or a pair of integers, got \(2, 2, 2\)"),
    ("stride-zero", _sweep(stride=0), r"stride must be > 0, got 0"),
    ("stride-negative", _sweep(stride=(2, -1)), r"stride must be > 0, got -1"),
    ("stride-float", _sweep(stride=1.5), r"stride must be an integer or a pair of integers, got 1.5"),
    ("fill-shape", _sweep(fill=np.zeros(3)), r"fill must be a scalar, a colour of shape \(1,\).*got shape \(3,\)"),
    ("fill-nan", _sweep(fill=np.nan), r"fill must be finite, got 1 non-finite values"),
    ("layer-flat", _sweep(layer="fc5"), r"layer 'fc5' of mnist_cnn has no spatial maps"),
    ("layer-unknown", _sweep(layer="conv9"), r"unknown layer of mnist_cnn 'conv9'; expected one of \["),
    # sweep: memory budget
    ("budget-zero", _sweep(memory_budget=0), r"memory_budget must be > 0, got 0"),
    ("budget-negative", _sweep(memory_budget=-1e9), r"memory_budget must be > 0, got -1000000000.0"),
    ("budget-too-small", _sweep(memory_budget=1e5),
     r"memory_budget=1e\+05 bytes is too small for one occluder position: use at least [0-9.]+e\+06 \(one image"),
    ("budget-inf", _sweep(memory_budget=float("inf")), r"memory_budget must be a finite number, got inf"),
    ("budget-nan", _sweep(memory_budget=float("nan")), r"memory_budget must be a finite number, got nan"),
    ("budget-string", _sweep(memory_budget="1e9"), r"memory_budget must be a finite number, got '1e9'"),
    ("budget-bool", _sweep(memory_budget=True), r"memory_budget must be a finite number, got True"),
    # sweep: methods and approximations
    ("method", _sweep(method="fast"), r"unknown method 'fast'; expected one of \['full', 'incremental'\]"),
    ("score", _sweep(score="prob"), r"unknown score 'prob'; expected one of \['probability', 'logit'\]"),
    ("precision", _sweep(precision="tf32"), r"unknown precision 'tf32'"),
    ("tau-full", _sweep(tau=0.5), r"tau caps the windows of method='incremental', got method='full'"),
    ("tau-zero", _sweep(method="incremental", tau=0), r"tau must be a number in \(0, 1\], got 0"),
    ("tau-large", _sweep(method="incremental", tau=1.5), r"tau must be a number in \(0, 1\], got 1.5"),
    ("tau-string", _sweep(method="incremental", tau="0.5"), r"tau must be a finite number, got '0.5'"),
    ("coarse-multiple", _sweep(coarse_stride=3), r"coarse_stride must be a multiple of stride larger than it, got "
                                                 r"coarse_stride=\(3, 3\) with stride=\(2, 2\)"),
    ("coarse-float", _sweep(coarse_stride=4.0), r"coarse_stride must be an integer or a pair of integers, got 4.0"),
    ("coarse-one-cell", _sweep(method="incremental", coarse_stride=32),
     r"coarse_stride=\(32, 32\) makes one coarse cell of the whole 13x13 grid"),
    ("drill-zero", _sweep(coarse_stride=4, drill_fraction=0), r"drill_fraction must be in \(0, 1\], got 0"),
    ("drill-large", _sweep(coarse_stride=4, drill_fraction=1.5), r"drill_fraction must be in \(0, 1\], got 1.5"),
    ("mesh", _sweep(mesh="data"), r"mesh must be a jax.sharding.Mesh \(or None\), got str 'data'"),
    ("progress", _sweep(progress=5), r"progress must be callable \(or None\), got int 5"),
    # the other public functions
    ("positions-stride-zero", lambda _: positions(28, 4, 0), r"stride must be an integer >= 1, got 0"),
    ("positions-patch-float", lambda _: positions(28, 4.5, 1), r"patch must be an integer >= 1, got 4.5"),
    ("positions-patch-large", lambda _: positions(28, 29, 1), r"patch 29 is larger than the axis \(28\)"),
    ("propagate-size", lambda _: propagate(models.conv("c", 1, 3), (26, 26), (0, 0), (0, 4)),
     r"size must be an integer >= 1, got 0"),
    ("propagate-tau", lambda _: propagate(models.conv("c", 1, 3), (26, 26), (0, 0), (4, 4), tau=2),
     r"tau must be None or a number in \(0, 1\], got 2"),
    ("attribution-shape", lambda _: captum_attribution(np.zeros((1, 2, 3)), np.arange(3), np.arange(3), (2, 2), (6, 6)),
     r"drop_NPQ must have shape \(N, 3, 3\), one value per image and occluder row and column, got \(1, 2, 3\)"),
    ("attribution-patch", lambda _: captum_attribution(np.zeros((1, 2, 2)), np.arange(2), np.arange(2), (0, 2), (6, 6)),
     r"patch must be > 0, got 0"),
    ("summary-type", lambda _: summary({"prob_NPQ": np.zeros((1, 2, 2))}),
     r"summary needs the OcclusionMaps of sweep, got dict"),
    ("ssim-shapes", lambda _: ssim(MAP_7x7, MAP_7x7[:6]), r"ssim needs maps of one shape, got \(7, 7\) and \(6, 7\)"),
    ("ssim-small", lambda _: ssim(MAP_7x7[:5, :5], MAP_7x7[:5, :5]),
     r"ssim needs maps of at least 7x7 \(the window\), got shape \(5, 5\)"),
    ("ssim-window", lambda _: ssim(MAP_7x7, MAP_7x7, window=2.5), r"window must be an integer >= 2, got 2.5"),
    ("ssim-range", lambda _: ssim(MAP_7x7, MAP_7x7, data_range=0),
     r"data_range must be None or a finite number > 0, got 0"),
    ("ssim-nan", lambda _: ssim(_nan_at(MAP_7x7, (2, 3)), MAP_7x7),
     r"ssim's maps a must be finite, got 1 non-finite values \(first at index \(2, 3\): nan\)"),
]


@pytest.mark.parametrize("call,message", [pytest.param(c, m, id=i) for i, c, m in BAD_INPUTS])
def test_bad_input_is_rejected_clearly(mnist, call, message):
    with pytest.raises(ValueError, match=message):
        call(mnist)


# --- summaries and figures -------------------------------------------------------------


def test_summary_hand_computed():
    prob = np.array([[[0.9, 0.2], [0.8, 0.7]]])
    maps = OcclusionMaps(rows_P=np.array([0, 3]), cols_Q=np.array([0, 3]), patch=(4, 4), prob_NPQ=prob,
                         label_NPQ=np.array([[[1, 2], [1, 1]]]), feature_NPQ=None, channel_N=None,
                         base_prob_N=np.array([0.95]), base_label_N=np.array([1]), score_NPQ=prob,
                         base_score_N=np.array([0.95]), attribution_NHW=np.arange(49.0).reshape(1, 7, 7),
                         computed_NPQ=np.ones((1, 2, 2), bool), score="probability")
    got = summary(maps)
    assert got["min_prob"][0] == 0.2 and got["drop"][0] == pytest.approx(0.75)
    assert (got["row"][0], got["col"][0]) == (1.5, 4.5)  # the occluder at (0, 3) is centred 1.5 further
    assert (got["peak_row"][0], got["peak_col"][0]) == (6, 6) and got["flipped"][0] == 0.25
    # on a 6x6 image the occluder at (0, 3) is cut to columns 3..5: its part inside is centred at 4
    cut = summary(dataclasses.replace(maps, attribution_NHW=np.zeros((1, 6, 6))))
    assert (cut["row"][0], cut["col"][0]) == (1.5, 4.0)


def test_demo_figures_write_fig7(mnist, tmp_path):
    model, params, x, labels = mnist
    paths = demo_figures(model, params, x, labels, tmp_path)
    assert [p.name for p in paths] == ["occlusion_fig7.png"] and paths[0].stat().st_size > 10_000
