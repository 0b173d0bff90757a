"""scripts/architecture.py end to end (--quick: tiny widths, one epoch of the bundled sample
at 64x64): the variants are the ones named, and the reported numbers equal a forward pass
of every test image through the restored checkpoints."""

import json
import sys
from pathlib import Path

import jax
import numpy as np
import pytest

from jaxvis import checkpoint, configs, data, train

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts"))
import architecture  # noqa: E402


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("architecture")
    architecture.main(["--quick", "--workdir", str(root / "runs"), "--out", str(root / "results"), "--no-progress"])
    return root, json.loads((root / "results" / "results.json").read_text())


def test_variants_have_the_papers_first_layers_and_every_checkpoint(run):
    root, _ = run
    for variant, kernel, stride, conv1_map, conv2_map in (("zfnet", 7, 2, 30, 6), ("alexnet", 11, 4, 15, 7)):
        model, params, _ = checkpoint.restore_model(root / "runs" / variant)
        assert params["conv1"]["kernel"].shape == (kernel, kernel, 1, 4)
        assert model.layer("conv1").stride == (stride, stride)
        assert model.shapes["conv1"][:2] == (conv1_map, conv1_map) and model.shapes["conv2"][:2] == (conv2_map,) * 2
        # 1,000 images in batches of 50: the initialization (step 1) and the epoch's end (step 20)
        assert checkpoint.saved_steps(root / "runs" / variant) == [1, 20]
        _, first, _ = checkpoint.restore_model(root / "runs" / variant, 1)
        # conv1 drawn from N(0, 1e-2) (the paper's), the rest He-normal: std sqrt(2 / fan_in) (truncated: a bit less)
        assert 0.007 < np.std(first["conv1"]["kernel"]) < 0.013, variant
        assert 0.6 < np.std(first["conv2"]["kernel"]) / np.sqrt(2 / (5 * 5 * 4)) < 1.1, variant


def test_reported_numbers_equal_a_forward_pass_of_every_test_image(run):
    root, results = run
    test = data.open_dataset("mnist_sample", "test", image_size=64)
    images, labels = next(iter(test.batches(test.num_examples)))
    for variant, found in results["variants"].items():
        model, params, _ = checkpoint.restore_model(root / "runs" / variant)
        logits, trace = jax.jit(model.apply)(params, model.normalize(images))
        accuracy = float(np.mean(np.argmax(np.asarray(logits), -1) == labels))
        assert found["train"]["eval"]["top1"] == pytest.approx(accuracy, abs=1e-6), variant
        strongest = np.asarray(trace.activations["relu1"]).max(axis=(0, 1, 2))
        analysis = found["analysis"]
        assert analysis["dead_fraction_relu1"] == pytest.approx(np.mean(strongest <= 0)), variant
        assert analysis["dead_maps_relu1"] == np.flatnonzero(strongest <= 0).tolist(), variant
        assert sum(analysis["frequency_coverage"].values()) == pytest.approx(1.0)
        assert analysis["conv1"]["stride"] == model.layer("conv1").stride[0]


def test_outputs_are_written_and_a_finished_run_is_reused(run):
    root, results = run
    for name in ("filters.png", "spectra.png", "layer2_zfnet.png", "layer2_alexnet.png"):
        assert (root / "results" / name).read_bytes()[:4] == b"\x89PNG", name
    readme = (root / "results" / "README.md").read_text()
    assert "scripts/architecture.py --quick" in readme and readme.count("| ZFNet-like") == 1
    workdir = root / "runs" / "zfnet"
    log = (workdir / train.METRICS_FILE).read_text()
    config = architecture.make_config("zfnet", architecture.QUICK, 50, 20, 1e-2)
    again = architecture.train_variant(config, workdir, architecture.QUICK["early_steps"], False, 1e-2, 20)
    assert again == results["variants"]["zfnet"]["train"]
    assert (workdir / train.METRICS_FILE).read_text() == log, "a finished run must not train again"
    longer = configs.replace(config, num_epochs=2)  # a finished run is reused only for its own settings
    with pytest.raises(ValueError, match=r"holds a finished run with other settings \(config\)"):
        architecture.train_variant(longer, workdir, architecture.QUICK["early_steps"], False, 1e-2, 20)
