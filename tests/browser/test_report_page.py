"""The report's page in a real browser (Debian's headless Chromium): every figure loads,
every section of every photo is there. Run by ``make browser``, not ``make test``.

The page marks each ``<img>`` with ``data-loaded`` once it has loaded (``naturalWidth > 0``:
decoded to a real picture); Chromium's ``--dump-dom`` prints the DOM after the load event.
"""

import json
import re
import shutil
import subprocess

import jax
import numpy as np
import pytest

from jaxvis import classes, report
from jaxvis.models import IMAGENET_MEAN, IMAGENET_STD, Model, conv, dense, flatten, max_pool, relu

MODEL = Model("tiny", (conv("conv1", 4, 3, padding=1), relu("relu1"), max_pool("pool1"),
                       conv("conv2", 8, 3, padding=1), relu("relu2"), max_pool("pool2"), flatten(), dense("fc", 10)),
              (32, 32, 3), IMAGENET_MEAN, IMAGENET_STD)
SECTIONS = ("predictions", "projections", "transforms", "occlusion", "saliency")


def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    assert found, "the browser checks need Debian's chromium: apt-get install -y chromium"
    return found


def rendered_dom(index) -> str:
    """The page's DOM after its load event, from headless Chromium."""
    run = subprocess.run([chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--virtual-time-budget=10000",
                          "--dump-dom", index.resolve().as_uri()], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-2000:]
    return run.stdout


def problems(index, photos, sections) -> list[str]:
    """What is wrong with the page as the browser shows it: images that did not load,
    photos or sections missing, the load check not run."""
    dom = rendered_dom(index)
    found = []
    if not re.search(r'<body[^>]*data-checked="true"', dom):
        found.append("the page's load check did not run")
    images = re.findall(r"<img [^>]*>", dom)
    if not images:
        found.append("no images")
    for tag in images:
        if 'data-loaded="true"' not in tag:
            found.append("image not loaded: " + re.search(r'src="([^"]+)"', tag).group(1))
    for photo in photos:
        for section in sections:
            if f'id="{photo}-{section}"' not in dom:
                found.append(f"section {section} of {photo} missing")
    return found


@pytest.fixture(scope="module")
def page(tmp_path_factory):
    out = tmp_path_factory.mktemp("report")
    net = report.Network(MODEL, MODEL.init(jax.random.key(0)), "random (seed 0)", True, classes.for_model(MODEL))
    photos = np.random.default_rng(0).random((2, 32, 32, 3), np.float32)
    report.write(net, photos, ["cat.jpg", "dog.png"], out, report.Settings(sections=SECTIONS, patch=8, stride=8),
                 progress=False)
    return out


def test_every_image_loads_and_every_section_is_there(page):
    assert problems(page / "index.html", ("cat", "dog"), SECTIONS) == []
    dom = rendered_dom(page / "index.html")
    assert len(re.findall(r'data-loaded="true"', dom)) == 2 * 6  # thumbnail + 5 figures per photo


def test_a_deleted_or_broken_figure_is_caught(page, tmp_path):
    copy = tmp_path / "report"
    shutil.copytree(page, copy)
    (copy / "dog" / "occlusion-heat.png").unlink()
    (copy / "cat" / "projections-projections.png").write_bytes(b"not a png")
    assert sorted(problems(copy / "index.html", ("cat", "dog"), SECTIONS)) == [
        "image not loaded: cat/projections-projections.png", "image not loaded: dog/occlusion-heat.png"]


def test_a_missing_section_is_caught(page, tmp_path):
    copy = tmp_path / "report"
    shutil.copytree(page, copy)
    index = copy / "index.html"
    index.write_text(index.read_text().replace('id="cat-saliency"', 'id="cat-other"'))
    assert problems(index, ("cat", "dog"), SECTIONS) == ["section saliency of cat missing"]
    assert json.loads((copy / "cat" / "saliency.json").read_text())["result"]["files"]  # the figure is still there
