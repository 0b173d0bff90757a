"""The analysis command lines on photos (``--image``) with a weights file (``--weights``):
a small random ZFNet saved in torchvision's layout, two PNGs written here. The oracle for
each photo's class is the network applied by hand: ImageNet mean/std written out, the
model built again from the zoo, the argmax of its softmax."""

import csv
import json
import sys
from pathlib import Path

import jax
import numpy as np
import pytest
from PIL import Image

from jaxvis import cli, images, models, weights
from jaxvis.classes import IMAGENET

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
import class_model as class_model_cli  # noqa: E402
import deconvnet as deconvnet_cli  # noqa: E402
import invariance as invariance_cli  # noqa: E402
import invert as invert_cli  # noqa: E402
import occlusion as occlusion_cli  # noqa: E402
import saliency as saliency_cli  # noqa: E402

SETTINGS = dict(input_size=64, hidden=32, widths=(8, 8, 8, 8, 8))
MEAN, STD = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])  # torchvision's ImageNet constants


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """(network arguments, photo folder, the oracle's softmax per photo, in file-name order)."""
    root = tmp_path_factory.mktemp("photos")
    model = models.build("zfnet", **SETTINGS)
    params = model.init(jax.random.key(3))
    weights.save(model, params, root / "zf.npz")
    folder = root / "photos"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for name, (h, w) in (("a.png", (70, 90)), ("b.png", (96, 64))):
        smooth = np.kron(rng.integers(0, 255, (h // 8 + 1, w // 8 + 1, 3)), np.ones((8, 8, 1)))[:h, :w]
        Image.fromarray(smooth.astype(np.uint8)).save(folder / name)
    pixels = images.load(folder, "torchvision", size=64).pixels_NHWC  # the preset is jaxvis.images's, tested there
    probs = np.asarray(jax.nn.softmax(model.apply(params, (pixels - MEAN) / STD)[0]))
    network = ["--weights", str(root / "zf.npz"), "--model", "zfnet", "--input-size", "64",
               "--model-set", "hidden=32", "--model-set", "widths=(8, 8, 8, 8, 8)"]
    return network, str(folder), probs


def test_saliency_explains_each_photos_predicted_class(setup, tmp_path):
    network, folder, probs = setup
    saliency_cli.main([*network, "--image", folder, "--out", str(tmp_path), "--steps", "2", "--no-occlusion",
                       "--no-controls", "--methods", "gradient", "guided"])
    out = json.loads((tmp_path / "faithfulness.json").read_text())
    assert out["class"] == "predicted class" and out["images"] == 2
    records = out["photos"]
    assert [r["image"] for r in records] == ["a.png", "b.png"]
    assert [r["predicted"] for r in records] == probs.argmax(axis=1).tolist()
    assert [r["class"] for r in records] == [r["predicted"] for r in records]
    np.testing.assert_allclose([r["predicted_prob"] for r in records], probs.max(axis=1), atol=2e-6)
    assert records[0]["predicted_name"] == IMAGENET.name(records[0]["predicted"])
    assert "label" not in json.dumps(out) and (tmp_path / "methods.png").stat().st_size > 10_000


def test_occlusion_maps_photos_and_draws_fig7(setup, tmp_path):
    network, folder, probs = setup
    occlusion_cli.main([*network, "--image", folder, "--out", str(tmp_path), "--patch", "16", "--stride", "16"])
    with open(tmp_path / "summary.csv") as f:
        rows = list(csv.DictReader(f))
    assert [r["image"] for r in rows] == ["a.png", "b.png"] and "label" not in rows[0]
    assert [int(r["predicted"]) for r in rows] == probs.argmax(axis=1).tolist()
    assert [int(r["class"]) for r in rows] == probs.argmax(axis=1).tolist()
    assert [r["class_name"] for r in rows] == [IMAGENET.name(i) for i in probs.argmax(axis=1)]
    np.testing.assert_allclose([float(r["base_prob"]) for r in rows], probs.max(axis=1), rtol=1e-5)
    assert (tmp_path / "fig7.png").stat().st_size > 10_000
    run = json.loads((tmp_path / "run.json").read_text())
    assert run["image"] == [folder] and run["layer"] == "relu5" and (run["patch"], run["stride"]) == (16, 16)
    assert "dataset" not in run and run["preset"] == "torchvision"


def test_invariance_of_a_named_class(setup, tmp_path):
    network, folder, probs = setup
    invariance_cli.main([*network, "--image", folder, "--out", str(tmp_path), "--class", "goldfish",
                         "--layers", "relu1", "--translate=-8:8:8", "--scale", "1:1:1", "--rotate", "0:0:1"])
    out = json.loads((tmp_path / "invariance.json").read_text())
    assert out["class"] == "class goldfish" and [r["class"] for r in out["photos"]] == [1, 1]
    np.testing.assert_allclose([r["class_prob"] for r in out["photos"]], probs[:, 1], atol=1e-6)
    identity = out["families"]["translate_v"]["amounts"].index(0.0)  # the untransformed photo
    np.testing.assert_allclose(np.asarray(out["families"]["translate_v"]["per_image"]["true_prob"])[:, identity],
                               probs[:, 1], atol=6e-6)  # written with 5 decimals
    assert "labels" not in out


def test_deconvnet_class_model_and_inversion_take_photos_and_weights(setup, tmp_path):
    network, folder, _ = setup
    deconvnet_cli.main([*network, "--image", folder, "--out", str(tmp_path / "d"), "--layer", "relu1",
                        "--maps", "2"])
    assert all((tmp_path / "d" / n).stat().st_size > 5_000 for n in ("strongest.png", "relu1.png", "filters.png"))
    class_model_cli.main([*network, "--out", str(tmp_path / "c"), "--classes", "flamingo", "1", "130",
                          "--presets", "simonyan", "--steps", "2", "--init-std", "1"])
    out = json.loads((tmp_path / "c" / "class_models.json").read_text())
    assert out["classes"] == [{"index": 130, "name": "flamingo"}, {"index": 1, "name": "goldfish"}]
    assert len(out["presets"]["simonyan"]["probabilities"]) == 2
    invert_cli.main([*network, "--image", folder, "--out", str(tmp_path / "i"), "--layers", "relu1", "--steps", "2",
                     "--num-images", "1"])
    assert json.loads((tmp_path / "i" / "inversion.json").read_text())["images"] == ["a.png"]


def test_bad_network_arguments_end_with_one_line(setup, tmp_path, monkeypatch, capsys):
    network, folder, _ = setup
    monkeypatch.delenv("JAXVIS_TRACEBACK", raising=False)
    with pytest.raises(SystemExit, match=r"^error: preset 'caffe' \(BGR.*use preset 'torchvision' or 'whole'$"):
        cli.run(lambda: saliency_cli.main([*network, "--preset", "caffe", "--image", folder, "--out", str(tmp_path)]))
    with pytest.raises(SystemExit, match=r"^error: unknown class 'goldfsh' .*Did you mean 'goldfish'"):
        cli.run(lambda: invariance_cli.main([*network, "--image", folder, "--out", str(tmp_path),
                                             "--class", "goldfsh"]))
    with pytest.raises(SystemExit):
        saliency_cli.main([*network, "--checkpoint", "x", "--out", str(tmp_path)])
    assert "error: argument --checkpoint: not allowed with argument --weights" in capsys.readouterr().err
