"""The HTML report (jaxvis.report): its page, its numbers against model.apply, resuming, errors."""

import html
import json
import re
import sys
from pathlib import Path

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import rel_err
from PIL import Image

import jaxvis
from jaxvis import classes, images, models, project, report, weights
from jaxvis.analysis import invariance
from jaxvis.models import IMAGENET_MEAN, IMAGENET_STD, Model, conv, dense, flatten, max_pool, relu
from jaxvis.project import Select
from jaxvis.wrap import wrap_linen

MODEL = Model("tiny", (conv("conv1", 4, 3, padding=1), relu("relu1"), max_pool("pool1"),
                       conv("conv2", 8, 3, padding=1), relu("relu2"), max_pool("pool2"), flatten(), dense("fc", 10)),
              (32, 32, 3), IMAGENET_MEAN, IMAGENET_STD)
CHEAP = report.Settings(patch=8, stride=8)
SETTINGS = report.Settings(sections=report.SECTIONS, patch=8, stride=8, invert=("relu2",), synthesis_steps=2)


@pytest.fixture(scope="module")
def network():
    params = MODEL.init(jax.random.key(0))
    # a larger last layer spreads the probabilities, so the variants' numbers differ
    params["fc"]["kernel"] = params["fc"]["kernel"] * 4
    return report.Network(MODEL, params, "random (seed 0)", True, classes.for_model(MODEL))


@pytest.fixture(scope="module")
def photos():
    return np.random.default_rng(0).random((2, 32, 32, 3), np.float32)


@pytest.fixture(scope="module")
def written(network, photos, tmp_path_factory):
    out = tmp_path_factory.mktemp("report")
    report.write(network, photos, ["in/cat.jpg", "other/cat.png"], out, SETTINGS, notes=[["converted from RGBA"], []],
                 progress=False)
    return out


def _record(out, photo, section):
    return json.loads((out / photo / f"{section}.json").read_text())["result"]


class TinyLinen(nn.Module):
    """MODEL as a Flax linen module: with MODEL's params as its variables, the same network."""

    @nn.compact
    def __call__(self, x):
        x = nn.max_pool(nn.relu(nn.Conv(4, (3, 3), padding=1, name="conv1")(x)), (2, 2), (2, 2))
        x = nn.max_pool(nn.relu(nn.Conv(8, (3, 3), padding=1, name="conv2")(x)), (2, 2), (2, 2))
        return nn.Dense(10, name="fc")(x.reshape(x.shape[0], -1))


@pytest.fixture(scope="module")
def wrapped_written(network, photos, tmp_path_factory):
    """The first photo's report of MODEL's Flax twin, wrapped (:func:`jaxvis.wrap`), with
    the tuple's report settings."""
    model, params = wrap_linen(TinyLinen(), {"params": network.params}, jnp.asarray(photos[:1]), name="tiny",
                               mean=IMAGENET_MEAN, std=IMAGENET_STD)
    out = tmp_path_factory.mktemp("wrapped")
    report.write(report.Network(model, params, network.source, True, network.names), photos[:1], ["in/cat.jpg"],
                 out, SETTINGS, progress=False)
    return out


def test_a_wrapped_models_report_has_the_tuples_numbers(written, wrapped_written):
    """Every section of the wrapped twin holds the numbers of the same network as a tuple
    (within 1e-5); its occlusion runs full re-inference, the tuple's incremental."""
    page = (wrapped_written / "index.html").read_text()
    assert re.findall(r'<div class="section" id="cat-(\w+)"', page) == list(report.SECTIONS)
    assert "full inference" in page and "left out" not in page
    for src in re.findall(r'src="([^"]+)"', page):
        assert (wrapped_written / src).is_file()
    got = {s: _record(wrapped_written, "cat", s)["data"] for s in report.SECTIONS}
    want = {s: _record(written, "cat", s)["data"] for s in report.SECTIONS}

    def close(a, b):
        return rel_err(np.asarray(a, float), np.asarray(b, float)) < 1e-5

    assert [t[:2] for t in got["predictions"]["top"]] == [t[:2] for t in want["predictions"]["top"]]
    assert close([t[2] for t in got["predictions"]["top"]], [t[2] for t in want["predictions"]["top"]])
    for key in ("layers", "channels", "rows", "cols"):
        assert got["projections"][key] == want["projections"][key], key
    assert close(got["projections"]["largest"], want["projections"]["largest"])
    rows = [(r["variant"], r["class"]) for r in got["transforms"]["table"]]
    assert rows == [(r["variant"], r["class"]) for r in want["transforms"]["table"]]
    for key in ("probability", "original_class_probability"):
        assert close([r[key] for r in got["transforms"]["table"]], [r[key] for r in want["transforms"]["table"]])
    assert got["saliency"]["methods"] == want["saliency"]["methods"]
    for method, (row, col, value) in want["saliency"]["peaks"].items():
        assert got["saliency"]["peaks"][method][:2] == [row, col], method
        assert close(got["saliency"]["peaks"][method][2], value), method
    assert got["class_model"]["class"] == want["class_model"]["class"]
    assert close(list(got["class_model"]["probability"].values()), list(want["class_model"]["probability"].values()))
    assert close(list(got["inversion"]["errors"].values()), list(want["inversion"]["errors"].values()))
    assert [got["occlusion"][k] for k in ("label", "row", "col", "positions")] == [
        want["occlusion"][k] for k in ("label", "row", "col", "positions")]
    assert want["occlusion"]["drop"] > 0 and close(got["occlusion"]["drop"], want["occlusion"]["drop"])


def test_sections_a_wrapped_network_cannot_have_are_left_out_with_the_reason(photos, tmp_path):
    """A tanh network: the deconvnet and guided rules are refused, so projections,
    transforms, occlusion (its Fig. 7 projection) and saliency are left out, each with
    the refusal on the page; its predictions equal its logits' softmax."""
    kernel = jax.random.normal(jax.random.key(0), (3, 3, 3, 4)) * 0.3
    dense = jax.random.normal(jax.random.key(1), (16 * 16 * 4, 10)) * 0.05

    def tanh_net(p, x):
        h = jax.lax.conv_general_dilated(x, p["conv"], (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"))
        h = jax.lax.reduce_window(jnp.maximum(jnp.tanh(h), 0), -jnp.inf, jax.lax.max, (1, 2, 2, 1), (1, 2, 2, 1),
                                  "VALID")
        return h.reshape(h.shape[0], -1) @ p["fc"]

    params = {"conv": kernel, "fc": dense}
    model = jaxvis.wrap(tanh_net, params, jnp.asarray(photos[:1]), name="tanh_net")
    network = report.Network(model, params, "random", True, classes.for_model(MODEL))
    report.write(network, photos[:1], ["a.jpg"], tmp_path, CHEAP, progress=False)
    page = html.unescape((tmp_path / "index.html").read_text())
    assert re.findall(r'<div class="section" id="a-(\w+)"', page) == ["predictions"]
    for title in ("Strongest map of each layer, projected", "Transformed photo", "Occlusion sensitivity",
                  "Saliency maps"):
        assert re.search(title + r" is left out: rule '(deconvnet|guided)' is defined for ReLUs only, and tanh_net "
                         r"has 1 other non-linearity on its input's path \(tanh", page), title
    probs = np.asarray(jax.nn.softmax(tanh_net(params, model.normalize(photos[:1]))))[0]
    top = _record(tmp_path, "a", "predictions")["data"]["top"]
    assert [t[0] for t in top] == np.argsort(-probs)[:5].tolist()
    assert np.abs(np.array([t[2] for t in top]) - np.sort(probs)[::-1][:5]).max() < 1e-6


def test_page_lists_every_section_of_every_photo_with_sized_images(written):
    page = (written / "index.html").read_text()
    assert "RANDOM WEIGHTS" in page and "converted from RGBA" in page
    for photo in ("cat", "cat-2"):
        found = re.findall(rf'<div class="section" id="{photo}-(\w+)"', page)
        assert found == list(report.SECTIONS), found
        for section in report.SECTIONS:  # the table of contents links each section
            assert f'href="#{photo}-{section}"' in page
    images = re.findall(r"<img [^>]*>", page)
    assert len(images) == 2 * 8  # per photo: thumbnail, projections, variants, heat, fig7, saliency, class model, inversion
    for tag in images:
        src = re.search(r'src="([^"]+)"', tag).group(1)
        assert (written / src).is_file() and re.search(r'alt="[^"]{10,}"', tag), tag
        assert re.search(r'width="\d+" height="\d+"', tag), tag
        assert not re.search(r'src="(/|\w+:)', tag), tag  # relative paths only


def test_top5_equals_decode_of_the_softmax(network, photos, written):
    probs = jax.nn.softmax(MODEL.apply(network.params, MODEL.normalize(photos))[0], axis=-1)
    page = (written / "index.html").read_text()
    for photo, p in zip(("cat", "cat-2"), np.asarray(probs)):
        expected = network.names.decode(p, 5)
        got = _record(written, photo, "predictions")["data"]["top"]
        assert [g[:2] for g in got] == [list(e[:2]) for e in expected]
        assert np.abs(np.array([g[2] for g in got]) - np.array([e[2] for e in expected])).max() < 1e-6
        for index, name, prob in expected:
            assert f"<td>{name}</td><td>{index}</td><td>{prob:.4f}</td>" in page


def test_transforms_table_equals_model_on_the_transformed_pixels(network, photos, written):
    x = np.asarray(MODEL.normalize(photos[0]))  # fill 0 in input space: the mean colour
    side, shift = 8, 4

    def covered(top, left):
        y = x.copy()
        y[top:top + side, left:left + side] = 0.0
        return y

    numpy_made = {
        "rotated 90°": np.rot90(x, 1), "rotated 180°": np.rot90(x, 2),
        f"grey {side}px square, top-left corner": covered(0, 0), f"grey {side}px square, centre": covered(12, 12),
        f"shifted {shift}px right": np.pad(x, ((0, 0), (shift, 0), (0, 0)))[:, :32],
        f"shifted {shift}px down": np.pad(x, ((shift, 0), (0, 0), (0, 0)))[:32],
        "zoomed in 1.25x": np.asarray(invariance.transform(jnp.asarray(x), "scale", 1.25)),
        "zoomed out 0.8x": np.asarray(invariance.transform(jnp.asarray(x), "scale", 0.8)),
        "original": x,
    }
    table = _record(written, "cat", "transforms")["data"]["table"]
    assert sorted(r["variant"] for r in table) == sorted(numpy_made)
    stack = np.stack([numpy_made[r["variant"]] for r in table]).astype(np.float32)
    probs = np.asarray(jax.nn.softmax(MODEL.apply(network.params, stack)[0], axis=-1))
    got = np.array([r["probability"] for r in table])
    assert [r["class"] for r in table] == probs.argmax(1).tolist()
    assert np.abs(got - probs.max(1)).max() < 1e-4, np.abs(got - probs.max(1)).max()
    original = probs[[r["variant"] for r in table].index("original")].argmax()
    assert np.abs(np.array([r["original_class_probability"] for r in table]) - probs[:, original]).max() < 1e-4
    assert len(set(np.round(got, 4))) > 3  # the variants do change the network's view


@pytest.mark.parametrize("shared_from", [0.0, 0.3, 2.0])  # all layers share a forward pass, some, none
def test_strongest_projections_equal_project_layer_by_layer(network, photos, shared_from):
    x = MODEL.normalize(photos)
    layers = report.spatial_layers(MODEL)
    proj, channels, rows, cols = report.strongest_projections(MODEL, network.params, x, layers, "guided", shared_from)
    for n in range(len(x)):
        for k, layer in enumerate(layers):
            act = MODEL.apply(network.params, x[n:n + 1], until=layer)[0][0]
            c = int(np.argmax(np.asarray(act).reshape(-1, act.shape[-1]).max(0)))
            i, j = np.unravel_index(np.argmax(np.asarray(act)[:, :, c]), act.shape[:2])
            oracle = project(MODEL, network.params, x[n], layer, Select.strongest(c), rule="guided")
            assert (int(channels[n, k]), int(rows[n, k]), int(cols[n, k])) == (c, i, j)
            err = float(jnp.abs(proj[n, k] - oracle).max() / jnp.abs(oracle).max())
            assert err < 1e-5, (layer, err)


def _counting(monkeypatch):
    calls = []
    for name, fn in list(report._COMPUTE.items()):
        monkeypatch.setitem(report._COMPUTE, name, lambda *a, fn=fn, name=name: calls.append(name) or fn(*a))
    return calls


def test_rerun_skips_finished_sections_and_redoes_changed_ones(network, photos, tmp_path, monkeypatch):
    report.write(network, photos[:1], ["a.jpg"], tmp_path, CHEAP, progress=False)
    calls = _counting(monkeypatch)
    report.write(network, photos[:1], ["a.jpg"], tmp_path, CHEAP, progress=False)
    assert calls == []
    report.write(network, photos[:1], ["a.jpg"], tmp_path, report.Settings(patch=8, stride=4), progress=False)
    assert calls == ["occlusion"]
    (tmp_path / "a" / "saliency-saliency.png").unlink()  # a lost figure is made again
    report.write(network, photos[:1] * 0.5, ["a.jpg"], tmp_path, report.Settings(patch=8, stride=4), progress=False)
    assert calls == ["occlusion", *report.DEFAULT_SECTIONS]  # another photo under the same name: all again


def test_an_error_midway_keeps_what_was_written(network, photos, tmp_path, monkeypatch):
    def broken(*args):
        raise ValueError("broken on purpose")

    monkeypatch.setitem(report._COMPUTE, "occlusion", broken)
    with pytest.raises(ValueError, match="broken on purpose"):
        report.write(network, photos, ["a.jpg", "b.jpg"], tmp_path, CHEAP, progress=False)
    page = (tmp_path / "index.html").read_text()
    assert re.findall(r'id="a-(\w+)"', page) == ["predictions", "projections", "transforms"]
    for src in re.findall(r'src="([^"]+)"', page):
        assert (tmp_path / src).is_file()
    monkeypatch.undo()
    calls = _counting(monkeypatch)
    report.write(network, photos, ["a.jpg", "b.jpg"], tmp_path, CHEAP, progress=False)
    assert calls == ["occlusion", "saliency", *report.DEFAULT_SECTIONS]


@pytest.mark.parametrize("change, message", [
    (dict(sections=("predictions", "colours")), "report section"),
    (dict(layers=("relu9",)), "layer of tiny"),
    (dict(layers=("fc",)), "no spatial maps"),
    (dict(rule="gradient"), "projection rule"),
    (dict(patch=40), "must fit"),
    (dict(top=11), "at most the 10 classes"),
    (dict(presets=("monet",)), "class-model preset"),
    (dict(patch=2.5), "must be an int"),
])
def test_bad_settings_are_refused_before_anything_is_written(network, photos, tmp_path, change, message):
    with pytest.raises(ValueError, match=message):
        report.write(network, photos, ["a.jpg", "b.jpg"], tmp_path, report.Settings(**change), progress=False)
    assert not (tmp_path / "index.html").exists()


# --- scripts/explain.py ------------------------------------------------------------------

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
import explain  # noqa: E402


@pytest.fixture(scope="module")
def zfnet_weights(tmp_path_factory):
    """A small random ZFNet saved as a torchvision-layout weights file, two photos (one RGBA)."""
    root = tmp_path_factory.mktemp("explain")
    model = models.build("zfnet", input_size=64, hidden=32, widths=(8, 8, 8, 8, 8))
    params = model.init(jax.random.key(3))
    weights.save(model, params, root / "zf.npz")
    rng = np.random.default_rng(0)
    (root / "photos").mkdir()
    Image.fromarray(rng.integers(0, 255, (70, 90, 3), dtype=np.uint8)).save(root / "photos" / "a.png")
    Image.fromarray(rng.integers(0, 255, (96, 64, 4), dtype=np.uint8)).save(root / "photos" / "b.png")
    args = ["--weights", str(root / "zf.npz"), "--model", "zfnet", "--input-size", "64", "--model-set", "hidden=32",
            "--model-set", "widths=(8, 8, 8, 8, 8)", "--image", str(root / "photos"), "--no-progress"]
    return model, params, root, args


def test_explain_with_a_weights_file_names_imagenet_classes(zfnet_weights, tmp_path):
    model, params, root, args = zfnet_weights
    explain.main([*args, "--out", str(tmp_path), "--sections", "predictions"])
    page = (tmp_path / "index.html").read_text()
    assert "RANDOM WEIGHTS" not in page and "zf.npz" in page and "RGBA" in page
    pixels = images.load(root / "photos", "torchvision", size=64).pixels_NHWC
    mean, std = np.array(IMAGENET_MEAN), np.array(IMAGENET_STD)  # torchvision's constants, written out
    probs = np.asarray(jax.nn.softmax(model.apply(params, (pixels - mean) / std)[0]))
    for photo, p in zip("ab", probs):
        top = _record(tmp_path, photo, "predictions")["data"]["top"]
        assert [t[1] for t in top] == [classes.IMAGENET.name(i) for i in np.argsort(-p)[:5]]
        assert np.abs(np.array([t[2] for t in top]) - np.sort(p)[::-1][:5]).max() < 1e-5


@pytest.mark.parametrize("extra, message", [
    (["--class", "flamingoo"], "Did you mean 'flamingo'"),
    (["--preset", "caffe"], "caffe"),
    (["--layers", "fc6"], "no spatial maps"),
])
def test_explain_refuses_bad_input_before_writing(zfnet_weights, tmp_path, extra, message):
    with pytest.raises(ValueError, match=message):
        explain.main([*zfnet_weights[3], "--out", str(tmp_path), *extra])
    assert not (tmp_path / "index.html").exists()
