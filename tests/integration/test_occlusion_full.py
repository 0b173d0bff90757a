"""The long occlusion checks: full-size networks, the trained MNIST model, Captum on the
same weights, several devices, and the dataset script's resuming."""

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest
from conftest import rel_err
from test_occlusion import he_params

from jaxvis import checkpoint, data, models, weights
from jaxvis.occlusion import ssim, sweep

ROOT = Path(__file__).resolve().parents[2]
CHECKPOINT = ROOT / "checkpoints" / "mnist_cnn"


@pytest.fixture(scope="module")
def trained():
    model, params, _ = checkpoint.restore_model(CHECKPOINT)
    sample = data.open_dataset("mnist_sample", "test")
    images, labels = next(iter(sample.batches(20)))
    return model, params, np.asarray(model.normalize(images)), labels


@pytest.mark.parametrize("name,layer", [("vgg16", "relu5_3"), ("zfnet", "conv5")])
def test_incremental_equals_full_at_224(name, layer):
    model = models.build(name)
    params = he_params(model)
    x = jax.random.normal(jax.random.key(1), (1, *model.input_shape))
    # 16x16 occluder at stride 52: 5 x 5 positions, borders and centre included
    full, incremental = (sweep(model, params, x, np.array([7]), 16, 52, layer=layer, method=method, score="logit")
                         for method in ("full", "incremental"))
    assert rel_err(incremental.score_NPQ, full.score_NPQ) <= 1e-5
    assert rel_err(incremental.feature_NPQ, full.feature_NPQ) <= 1e-5
    assert (incremental.label_NPQ == full.label_NPQ).all()


def test_incremental_equals_full_on_the_trained_mnist_cnn(trained):
    model, params, x, labels = trained
    full, incremental = (sweep(model, params, x, labels, 4, 1, layer="relu4", method=method)
                         for method in ("full", "incremental"))
    assert rel_err(incremental.prob_NPQ, full.prob_NPQ) <= 1e-5
    assert rel_err(incremental.feature_NPQ, full.feature_NPQ) <= 1e-5
    assert (incremental.label_NPQ == full.label_NPQ).all()


def test_incremental_equals_full_with_dilation():
    model = models.build("mnist_cnn", dilation=2)
    params = he_params(model)
    x = jax.random.normal(jax.random.key(1), (2, *model.input_shape))
    full, incremental = (sweep(model, params, x, np.array([1, 3]), 4, 3, layer="conv3", method=method,
                               score="logit") for method in ("full", "incremental"))
    assert rel_err(incremental.score_NPQ, full.score_NPQ) <= 1e-5
    assert rel_err(incremental.feature_NPQ, full.feature_NPQ) <= 1e-5


def test_approximations_stay_close_to_exact(trained):
    model, params, x, labels = trained
    exact = sweep(model, params, x, labels, 4, 1, method="incremental")
    for kwargs in (dict(tau=0.5), dict(coarse_stride=2), dict(tau=0.5, coarse_stride=4)):
        approx = sweep(model, params, x, labels, 4, 1, method="incremental", **kwargs)
        similarity = ssim(approx.prob_NPQ, exact.prob_NPQ)
        assert similarity.mean() >= 0.9, (kwargs, similarity.round(3))


@pytest.mark.parametrize("score", ["probability", "logit"])
def test_attribution_equals_captums_occlusion(trained, score):
    import captum.attr as captum
    import torch
    from torch import nn

    model, params, x, labels = trained
    net = nn.Module()
    net.features = nn.Sequential(nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(), nn.Conv2d(32, 32, 3, padding=1),
                                 nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(),
                                 nn.Conv2d(64, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2))
    net.classifier = nn.Sequential(nn.Linear(3136, 128), nn.ReLU(), nn.Dropout(), nn.Linear(128, 10))
    net.load_state_dict({k: torch.tensor(v) for k, v in weights.to_torchvision(model, params).items()})
    net.eval()

    def forward(v):
        logits = net.classifier(torch.flatten(net.features(v), 1))
        return torch.softmax(logits, -1) if score == "probability" else logits

    inputs = torch.tensor(np.transpose(x[:4], (0, 3, 1, 2)))
    with torch.no_grad():
        # stride 3 with a 5x5 window: the last window is cut at the border on both sides
        theirs = captum.Occlusion(forward).attribute(inputs, (1, 5, 5), strides=(1, 3, 3), baselines=0.25,
                                                     target=torch.tensor(labels[:4].astype(np.int64)),
                                                     perturbations_per_eval=64)[:, 0].numpy()
    ours = sweep(model, params, x[:4], labels[:4], 5, 3, fill=0.25, score=score).attribution_NHW
    assert rel_err(ours, theirs) <= 1e-4


def _run(code: str, devices: int) -> str:
    env = dict(os.environ, XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}",
               PYTHONPATH=os.pathsep.join([str(ROOT), str(ROOT / "tests")]))
    return subprocess.run([sys.executable, "-c", code], env=env, cwd=ROOT, capture_output=True, text=True,
                          check=True).stdout


def test_positions_spread_over_two_devices_give_the_same_maps(tmp_path):
    code = """
import jax, numpy as np
from jax.sharding import Mesh
from jaxvis import models
from jaxvis.occlusion import sweep
from test_occlusion import he_params
assert len(jax.devices()) == 2
model = models.build("mnist_cnn"); params = he_params(model)
x = np.asarray(jax.random.normal(jax.random.key(1), (3, 28, 28, 1))); labels = np.array([1, 2, 3])
for method in ("full", "incremental"):
    alone = sweep(model, params, x, labels, 5, 2, layer="relu4", method=method)
    spread = sweep(model, params, x, labels, 5, 2, layer="relu4", method=method,
                   mesh=Mesh(np.array(jax.devices()), ("data",)))
    np.testing.assert_allclose(spread.prob_NPQ, alone.prob_NPQ, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(spread.feature_NPQ, alone.feature_NPQ, rtol=1e-5)
print("ok")
"""
    assert _run(code, 2).strip().endswith("ok")


def _script():
    spec = importlib.util.spec_from_file_location("occlusion_script", ROOT / "scripts" / "occlusion.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_dataset_script_resumes_without_recomputing(tmp_path):
    script = _script()
    args = ["--checkpoint", str(CHECKPOINT), "--dataset", "mnist_sample", "--out", str(tmp_path), "--limit", "10",
            "--shard-size", "4", "--patch", "6", "--stride", "2", "--layer", "relu4"]
    script.main(args)
    shards = sorted(tmp_path.glob("shard_*.npz"))
    assert [s.name for s in shards] == ["shard_00000.npz", "shard_00001.npz", "shard_00002.npz"]
    before = {s.name: s.stat().st_mtime_ns for s in shards}
    with np.load(shards[1]) as f:
        kept = {k: f[k] for k in f.files}
    shards[1].unlink()  # as if killed while writing shard 1: only its temporary file was left
    (tmp_path / "shard_00001.npz.tmp").write_bytes(b"partial")
    script.main(args)
    assert shards[0].stat().st_mtime_ns == before["shard_00000.npz"]
    assert shards[2].stat().st_mtime_ns == before["shard_00002.npz"]
    with np.load(shards[1]) as f:
        np.testing.assert_allclose(f["prob_NPQ"], kept["prob_NPQ"], rtol=1e-6)
        assert f["index"].tolist() == [4, 5, 6, 7]
    lines = (tmp_path / "summary.csv").read_text().splitlines()
    assert lines[0].startswith("index,label,predicted,base_prob,min_prob,drop,row,col") and len(lines) == 11
    with pytest.raises(SystemExit, match="other settings"):
        script.main(args[:-2] + ["--layer", "relu3"])


def test_the_dataset_script_records_a_run_only_once_it_works(tmp_path, capsys):
    script = _script()
    args = ["--checkpoint", str(CHECKPOINT), "--dataset", "mnist_sample", "--out", str(tmp_path), "--limit", "2",
            "--shard-size", "2", "--patch", "6", "--stride", "4"]
    with pytest.raises(ValueError, match="unknown layer of mnist_cnn 'relu9'"):
        script.main(args + ["--layer", "relu9"])
    assert not (tmp_path / "run.json").exists()
    script.main(args + ["--layer", "relu4"])  # the corrected command is not refused
    shard = tmp_path / "shard_00000.npz"
    shard.write_bytes(shard.read_bytes()[:100])
    with pytest.raises(SystemExit, match=f"shard {shard} is damaged"):
        script.main(args + ["--layer", "relu4"])
    with pytest.raises(SystemExit):
        script.main(args + ["--limit", "0"])
    assert "--limit: expected an integer >= 1, got '0'" in capsys.readouterr().err


def test_the_dataset_script_spreads_over_two_devices(tmp_path):
    out = _run(f"""
import sys
sys.argv = ["occlusion.py", "--checkpoint", "{CHECKPOINT}", "--dataset", "mnist_sample", "--out", "{tmp_path}",
            "--limit", "6", "--shard-size", "6", "--patch", "6", "--stride", "2"]
exec(open("{ROOT / 'scripts' / 'occlusion.py'}").read())
""", 2)
    assert "2 device(s)" in out and (tmp_path / "summary.csv").exists()
