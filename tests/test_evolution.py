"""Feature evolution (Fig. 4) against a forward pass of every image and full-image projections."""

import json

import jax
import numpy as np
import pytest
from conftest import rel_err

from jaxvis import data, models, plots
from jaxvis.analysis import evolution
from jaxvis.plots.evolution import evolution_grid, inside_image
from jaxvis.project import Select, project

MAPS = {"relu1": [0, 3], "relu3": [2], "pool2": [1, 7]}


@pytest.fixture(scope="module")
def setup():
    model = models.build("mnist_cnn", widths=(4, 8), hidden=16)
    snapshots = [(0, model.init(jax.random.key(0))), (50, model.init(jax.random.key(1)))]
    sample = data.open_dataset("mnist_sample", "test")
    images = next(iter(sample.batches(sample.num_examples)))[0]
    evo = evolution.evolution(model, snapshots, images, MAPS, batch_size=300)  # last batch smaller
    return model, snapshots, images, evo


def test_strongest_activation_is_the_maximum_over_all_images(setup):
    model, snapshots, images, evo = setup
    x = model.normalize(images)
    for s, (_, params) in enumerate(snapshots):
        _, trace = jax.jit(model.apply)(params, x)
        for layer, ids in MAPS.items():
            act_NHWC = np.asarray(trace.activations[layer])
            n, h, w, _ = act_NHWC.shape
            found = evo.layers[layer]
            for i, m in enumerate(ids):
                flat = act_NHWC[..., m].ravel()  # row-major (image, row, col): argmax takes the first
                best = int(np.argmax(flat))
                image, rest = divmod(best, h * w)
                assert found.value[s, i] == pytest.approx(flat[best], rel=1e-6), (layer, m, s)
                assert (found.image[s, i], found.row[s, i], found.col[s, i]) == (image, *divmod(rest, w)), \
                    (layer, m, s)
    assert not np.array_equal(evo.layers["relu1"].image[0], evo.layers["relu1"].image[1]) or \
        not np.allclose(evo.layers["relu1"].value[0], evo.layers["relu1"].value[1]), "the snapshots must differ"


def test_projection_is_the_full_image_projection_of_that_unit_cropped(setup):
    model, snapshots, images, evo = setup
    margin, kinds = 40, set()
    for s, (_, params) in enumerate(snapshots):
        for layer, found in evo.layers.items():
            field = model.receptive_field(layer)
            for i, m in enumerate(found.maps):
                image, r, q = int(found.image[s, i]), int(found.row[s, i]), int(found.col[s, i])
                x = model.normalize(images[image])
                full = np.pad(np.asarray(project(model, params, x, layer, Select.unit(m, r, q), rule="deconvnet")),
                              ((margin, margin), (margin, margin), (0, 0)))
                top, left, h, w = field.window(r, q)
                expected = full[top + margin:top + margin + h, left + margin:left + margin + w]
                assert found.projection[s, i].shape == (h, w, 1)
                assert rel_err(found.projection[s, i], expected) < 1e-5, (layer, m, s)
                assert np.abs(expected).max() > 0, "a strongest activation above zero projects to something"
                kinds.add(top >= 0 and left >= 0 and top + h <= 28 and left + w <= 28)
    assert kinds == {True, False}, "units inside the image and at its border must both be checked"


def test_filter_similarity_is_the_cosine_to_the_last_snapshot(setup):
    model, snapshots, _, _ = setup
    got = evolution.filter_similarity(model, snapshots, {"relu1": [0, 3], "pool2": [7]})
    for layer, conv, ids in (("relu1", "conv1", [0, 3]), ("pool2", "conv4", [7])):
        for i, m in enumerate(ids):
            a, b = (np.asarray(p[conv]["kernel"][..., m], np.float64).ravel() for _, p in snapshots)
            np.testing.assert_allclose(got[layer][:, i], [a @ b / np.linalg.norm(a) / np.linalg.norm(b), 1.0],
                                       rtol=1e-9)


def test_filter_progress_is_the_share_of_the_way_to_the_last_snapshot(setup):
    model, snapshots, _, _ = setup
    halfway = jax.tree.map(lambda a, b: 0.25 * a + 0.75 * b, *(p for _, p in snapshots))
    three = [snapshots[0], (25, halfway), snapshots[1]]
    got = evolution.filter_progress(model, three, {"relu3": [2, 5]})
    np.testing.assert_allclose(got["relu3"], [[0.0, 0.0], [0.75, 0.75], [1.0, 1.0]], atol=1e-6)
    same = evolution.filter_progress(model, [snapshots[0], snapshots[0]], {"relu1": [0]})
    np.testing.assert_array_equal(same["relu1"], [[1.0], [1.0]])


def test_figure_writes_a_png(setup, tmp_path):
    _, _, _, evo = setup
    path = tmp_path / "evolution.png"
    plots.save(evolution_grid(evo, ["init", "step 50"]), path)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 5000


M = models.build("mnist_cnn", widths=(4, 8), hidden=16)
SNAPSHOTS = [(0, M.init(jax.random.key(0)))]
IMAGES = np.random.default_rng(0).integers(0, 256, (6, 28, 28, 1), dtype=np.uint8)
WIDER = models.build("mnist_cnn", widths=(8, 8), hidden=16).init(jax.random.key(0))  # conv1 has 8 maps, not 4


def evolve(maps=None, snapshots=SNAPSHOTS, images=IMAGES, **kwargs):
    return evolution.evolution(M, snapshots, images, {"relu1": [0]} if maps is None else maps, **kwargs)


BAD_INPUTS = [
    ("map-too-large", lambda: evolve({"relu1": [4]}),
     r"map index of layer 'relu1' out of range: expected 0 <= .* < 4, got \[4\]"),
    ("map-negative", lambda: evolve({"relu1": [0, -1]}),
     r"map index of layer 'relu1' out of range: expected 0 <= .* < 4, got \[-1\]"),
    ("map-fraction", lambda: evolve({"relu1": [0.5]}), r"map index of layer 'relu1' must be an integer, got float64"),
    ("layer-typo", lambda: evolve({"rellu1": [0]}), r"unknown layer of mnist_cnn 'rellu1'.*Did you mean 'relu1'"),
    ("dense-layer", lambda: evolve({"fc5": [0]}), r"layer 'fc5' of mnist_cnn has no spatial maps"),
    ("no-maps-of-a-layer", lambda: evolve({"relu1": []}),
     r"maps of layer 'relu1' must be a non-empty list of map indices, got \[\]"),
    ("maps-matrix", lambda: evolve({"relu1": [[0, 1]]}),
     r"maps of layer 'relu1' must be a non-empty list of map indices, got \[\[0, 1\]\]"),
    ("no-layers", lambda: evolve({}), r"maps must name at least one layer, e.g. \{'relu1': \[0, 5\]\}; got none"),
    ("maps-a-list", lambda: evolve(["relu1"]),
     r"maps must be a dict \{layer: map indices\}, e.g. \{'relu1': \[0, 5\]\}; got list"),
    ("no-snapshots", lambda: evolve(snapshots=[]), r"evolution needs at least one \(step, params\) snapshot, got none"),
    ("snapshot-not-a-pair", lambda: evolve(snapshots=[SNAPSHOTS[0][1]]),
     r"each snapshot must be a \(step, params\) pair, got dict"),
    ("snapshot-of-a-triple", lambda: evolve(snapshots=[(0, SNAPSHOTS[0][1], "x")]),
     r"each snapshot must be a \(step, params\) pair, got tuple of length 3"),
    ("snapshot-of-another-architecture", lambda: evolve(snapshots=[SNAPSHOTS[0], ("other", WIDER)]),
     r"the parameters of snapshot 'other' do not fit mnist_cnn: \['conv1'\]\['bias'\]: \(8,\) \(expected \(4,\)\)"),
    ("batch-size-zero", lambda: evolve(batch_size=0), r"batch_size must be an integer >= 1, got 0"),
    ("batch-size-fraction", lambda: evolve(batch_size=2.5), r"batch_size must be an integer >= 1, got 2.5"),
    ("unknown-rule", lambda: evolve(rule="guidded"), r"unknown rule 'guidded'.*Did you mean 'guided'"),
    ("progress-not-callable", lambda: evolve(progress=5), r"progress must be None or a callable, got int"),
    ("no-images", lambda: evolve(images=IMAGES[:0]), r"evolution needs at least one image, got none"),
    ("images-three-channels", lambda: evolve(images=np.zeros((2, 28, 28, 3), np.uint8)),
     r"pixels must have 1 channels on their last axis \(NHWC\) for mnist_cnn, got shape \(2, 28, 28, 3\)"),
    ("images-nan", lambda: evolve(images=np.full((2, 28, 28, 1), np.nan, np.float32)),
     r"images must be finite, got 1568 non-finite values"),
    ("images-generator", lambda: evolve(images=(i for i in IMAGES)),
     r"images must be an array \(N, H, W, C\) or a jaxvis.data.Dataset, got generator"),
    ("similarity-unknown-layer", lambda: evolution.filter_similarity(M, SNAPSHOTS, {"conv9": [0]}),
     r"unknown layer of mnist_cnn 'conv9'"),
    ("similarity-no-snapshots", lambda: evolution.filter_similarity(M, [], {"relu1": [0]}),
     r"evolution needs at least one \(step, params\) snapshot, got none"),
    ("progress-map-too-large", lambda: evolution.filter_progress(M, SNAPSHOTS, {"relu3": [8]}),
     r"map index of layer 'relu3' out of range: expected 0 <= .* < 8, got \[8\]"),
    ("progress-other-architecture", lambda: evolution.filter_progress(M, [(1, WIDER)], {"relu3": [0]}),
     r"the parameters of snapshot 1 do not fit mnist_cnn"),
]


@pytest.mark.parametrize("call, message", [case[1:] for case in BAD_INPUTS], ids=[case[0] for case in BAD_INPUTS])
def test_bad_input_is_a_value_error_saying_expected_and_given(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_inside_image_keeps_the_part_of_the_field_in_the_image():
    crop = np.arange(100.0).reshape(10, 10, 1)
    part = inside_image(crop, (-2, 60, 10, 10), (64, 64))  # rows -2..7 and columns 60..69 of a 64x64 image
    np.testing.assert_array_equal(part, crop[2:10, 0:4])
    np.testing.assert_array_equal(inside_image(crop, (3, 3, 10, 10), (64, 64)), crop)


def test_the_script_resumes_after_a_kill_and_equals_an_uninterrupted_run(tmp_path, monkeypatch):
    import sys
    from pathlib import Path

    from jaxvis import configs, train

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "scripts"))
    import evolution as script

    config = configs.get("mnist_cnn", model_overrides={"widths": (4, 8), "hidden": 8}, dataset="mnist_sample",
                         train_split="test", batch_size=50, max_steps=6, checkpoint_every_steps=2, keep_checkpoints=5,
                         log_every_steps=2, num_devices=1)
    train.train_and_evaluate(config, tmp_path / "run", progress=False)
    args = ["--checkpoint", str(tmp_path / "run"), "--limit", "40", "--layers", "relu1", "relu2", "--maps", "2",
            "--batch-size", "20"]
    script.main(args + ["--out", str(tmp_path / "whole")])
    calls, real = [], script.evolution.evolution

    def killed_at_the_third(*a, **k):
        calls.append(a[1][0][0])
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(*a, **k)

    monkeypatch.setattr(script.evolution, "evolution", killed_at_the_third)
    with pytest.raises(KeyboardInterrupt):
        script.main(args + ["--out", str(tmp_path / "resumed")])
    assert calls == [2, 4, 6] and len(list((tmp_path / "resumed" / script.PARTIAL).glob("*.npz"))) == 2
    calls.clear()
    script.main(args + ["--out", str(tmp_path / "resumed")])
    assert calls == [6], "only the checkpoint the kill interrupted runs again"
    assert not (tmp_path / "resumed" / script.PARTIAL).exists()
    whole, resumed = (json.loads((tmp_path / d / "evolution.json").read_text()) for d in ("whole", "resumed"))
    for key in ("steps", "layers"):
        assert whole[key] == resumed[key]
