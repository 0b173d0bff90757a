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


@pytest.mark.parametrize("maps, snapshots, message", [
    ({"relu1": [4]}, 1, "out of range"),
    ({"relu1": [-1]}, 1, "out of range"),
    ({"rellu1": [0]}, 1, "Did you mean 'relu1'"),
    ({"fc5": [0]}, 1, "no spatial maps"),
    ({"relu1": []}, 1, "non-empty"),
    ({}, 1, "at least one layer"),
    ({"relu1": [0]}, 0, "at least one"),
])
def test_bad_input_raises(setup, maps, snapshots, message):
    model, all_snapshots, images, _ = setup
    with pytest.raises(ValueError, match=message):
        evolution.evolution(model, all_snapshots[:snapshots], images[:10], maps)


def test_snapshot_of_another_architecture_raises(setup):
    model, snapshots, images, _ = setup
    other = {layer: dict(leaves) for layer, leaves in snapshots[0][1].items()}
    other["conv1"]["kernel"] = np.zeros((3, 3, 1, 8), np.float32)  # conv1 of widths (8, 8)
    with pytest.raises(ValueError, match="snapshot 'other'"):
        evolution.evolution(model, [snapshots[0], ("other", other)], images[:10], {"relu1": [0]})


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
