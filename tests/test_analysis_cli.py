"""The invariance, correspondence and deconvnet command lines, end to end on the bundled sample with
the shipped MNIST network: the files appear and hold the numbers the package computes.
(The ablation command line is tested in test_ablation.py, beside the run it reuses.)"""

import json
import sys
from pathlib import Path

import jax
import numpy as np
import pytest

from jaxvis import checkpoint, data, topk

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
import correspondence as correspondence_cli  # noqa: E402
import deconvnet as deconvnet_cli  # noqa: E402
import invariance as invariance_cli  # noqa: E402
import occlusion_summary  # noqa: E402

CHECKPOINT = str(ROOT / "checkpoints" / "mnist_cnn")


@pytest.fixture(scope="module")
def sample():
    dataset = data.open_dataset("mnist_sample", "test")
    return next(iter(dataset.batches(dataset.num_examples)))


def test_invariance_cli_writes_the_figure_and_the_numbers(tmp_path, sample):
    invariance_cli.main(["--checkpoint", CHECKPOINT, "--out", str(tmp_path), "--indices", "3", "17",
                         "--layers", "relu1", "fc5", "--translate=-4:4:4", "--scale", "0.5:1.5:0.5",
                         "--rotate=-90:90:90"])
    assert (tmp_path / "invariance.png").stat().st_size > 10_000
    out = json.loads((tmp_path / "invariance.json").read_text())
    assert out["indices"] == [3, 17] and out["layers"] == ["relu1", "fc5"]
    model, params, _ = checkpoint.restore_model(CHECKPOINT)
    images, labels = sample
    for family, identity in (("translate_v", 1), ("translate_h", 1), ("scale", 1), ("rotate", 1)):
        f = out["families"][family]
        assert f["amounts"][identity] in (0.0, 1.0) and len(f["amounts"]) == 3
        np.testing.assert_allclose(np.asarray(f["per_image"]["relative_fc5"])[:, identity], 0.0, atol=1e-6)
    # a quarter turn is exact: its probabilities are those of the rotated digits
    rotated = np.rot90(images[[3, 17]].astype(np.float32) / 255.0, k=-1, axes=(1, 2))  # -90 degrees: clockwise
    probs = np.asarray(jax.nn.softmax(model.apply(params, model.normalize(rotated))[0]))
    np.testing.assert_allclose(np.asarray(out["families"]["rotate"]["per_image"]["true_prob"])[:, 0],
                               probs[[0, 1], labels[[3, 17]]], atol=2e-4)


def test_correspondence_cli_writes_the_table(tmp_path):
    correspondence_cli.main(["--checkpoint", CHECKPOINT, "--out", str(tmp_path), "--parts", "7:bar:0:0.25",
                             "0:left:0:1:0:0.5", "--repeats", "3", "--images", "3", "--pool", "10",
                             "--layers", "pool2", "relu5"])
    out = json.loads((tmp_path / "table.json").read_text())
    names = ["7: bar", "7: random on ink", "7: random anywhere", "0: left", "0: random on ink", "0: random anywhere"]
    assert list(out["rows"]) == names
    for cells in out["rows"].values():
        for cell in cells.values():
            assert len(cell["per_repeat"]) == 3 and 0 < cell["mean"] < 1
            assert cell["mean"] == pytest.approx(np.mean(cell["per_repeat"]), abs=1e-5)
            assert cell["std"] == pytest.approx(np.std(cell["per_repeat"]), abs=1e-5)
    table = (tmp_path / "table.md").read_text()
    assert "| mask | pool2 | relu5 |" in table and all(f"| {n} |" in table for n in names)
    assert (tmp_path / "parts_7.png").is_file() and (tmp_path / "parts_0.png").is_file()
    with pytest.raises(ValueError, match=r"a part is DIGIT:NAME:ROW0:ROW1\[:COL0:COL1\], got '7:bar:0'"):
        correspondence_cli.main(["--checkpoint", CHECKPOINT, "--out", str(tmp_path), "--parts", "7:bar:0"])
    with pytest.raises(ValueError, match=r"--images must be at least 2"):
        correspondence_cli.main(["--checkpoint", CHECKPOINT, "--out", str(tmp_path), "--images", "1"])


def test_occlusion_summary_counts_from_the_csv(tmp_path):
    rows = [  # label, predicted, drop, row, col, flipped
        (7, 7, 0.0, 1.5, 1.5, 0.0), (2, 2, 0.9, 10.5, 12.5, 0.02),
        (1, 3, 0.3, 14.5, 8.5, 0.5), (4, 4, 0.6, 10.5, 12.5, 0.0),
    ]
    lines = ["index,label,predicted,base_prob,min_prob,drop,row,col,peak_row,peak_col,flipped"]
    lines += [f"{i},{a},{b},1,{1 - d},{d},{r},{c},0,0,{f}" for i, (a, b, d, r, c, f) in enumerate(rows)]
    (tmp_path / "summary.csv").write_text("\n".join(lines) + "\n")
    occlusion_summary.main([str(tmp_path)])
    out = json.loads((tmp_path / "summary.json").read_text())
    assert out["images"] == 4 and out["accuracy_unoccluded"] == 0.75
    assert out["drop_quantiles"]["0.5"] == pytest.approx(0.45)  # between 0.3 and 0.6
    assert out["images_with_drop_over_0.5"] == 0.5
    assert out["images_where_some_occluder_changes_the_prediction"] == 0.5
    assert out["mean_fraction_of_positions_changing_the_prediction"] == pytest.approx(0.13)
    assert out["of_correct_images_changed_by_some_occluder"] == pytest.approx(1 / 3)
    assert (tmp_path / "summary.png").stat().st_size > 10_000
    with pytest.raises(ValueError, match="no summary.csv"):
        occlusion_summary.main([str(tmp_path / "missing")])


def test_deconvnet_cli_with_limit_projects_the_images_top_k_saw(tmp_path, sample, monkeypatch):
    """--limit 50: the top-9 of the first 50 digits, projected from those digits (the
    oracle: top_k on the first 50 digits, called directly)."""
    seen = {}
    project = topk.project_top_k

    def spy(model, params, images, top, layer, *args, **kw):
        seen["images"], seen["top"] = images, top
        return project(model, params, images, top, layer, *args, **kw)

    monkeypatch.setattr(topk, "project_top_k", spy)
    deconvnet_cli.main(["--checkpoint", CHECKPOINT, "--layer", "relu2", "--limit", "50", "--maps", "2",
                        "--out", str(tmp_path)])
    model, params, _ = checkpoint.restore_model(CHECKPOINT)
    oracle = topk.top_k(model, params, [sample[0][:50]], "relu2", k=9, one_per_image=True)
    assert len(seen["images"]) == 50 and seen["top"].num_images == 50
    np.testing.assert_array_equal(np.asarray(seen["top"].image), np.asarray(oracle.image))
    np.testing.assert_array_equal(seen["images"][int(oracle.image[0, 0])][0], sample[0][int(oracle.image[0, 0])])
    assert (tmp_path / "relu2.png").stat().st_size > 5_000
