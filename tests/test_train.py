"""jaxvis.train: the optimizer pieces against numpy, and real runs on the bundled sample.

One uninterrupted run (``reference``) is the oracle for the others: a run killed and
resumed, a run over 4 devices, and ``train_many`` all reproduce it.
"""

import json
import logging
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from jaxvis import checkpoint, configs, data, models, train
from test_checkpoint import damage, snapshot
from test_data import assert_refused, over_bad_inputs, write_imagenet

ROOT = Path(__file__).resolve().parent.parent
# 1,000 sample images: 25 steps of 40 an epoch; evaluation in 3 batches of 300 and a padded one
TINY = dict(model_overrides={"widths": (16, 32), "hidden": 64}, dataset="mnist_sample", train_split="test",
            batch_size=40, eval_batch_size=300, num_epochs=1, optimizer="adam", learning_rate=2e-3,
            schedule="constant", log_every_steps=5, checkpoint_every_steps=10, keep_checkpoints=3, num_devices=1)


def tiny_config(**overrides) -> configs.Config:
    return configs.get("mnist_cnn", **{**TINY, **overrides})


def run_python(code: str, *args: str, devices: int = 1) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices}"}
    return subprocess.run([sys.executable, "-c", code, *args], env=env, capture_output=True, text=True, timeout=300)


def read_log(workdir, split="train"):
    lines = [json.loads(line) for line in (Path(workdir) / train.METRICS_FILE).read_text().splitlines()]
    return [line for line in lines if line["split"] == split]


def assert_trees_close(a, b, atol=1e-6):
    for (path, x), y in zip(jax.tree_util.tree_flatten_with_path(a)[0], jax.tree.leaves(b)):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), atol=atol, rtol=1e-5,
                                   err_msg=jax.tree_util.keystr(path))


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("reference")
    result = train.train_and_evaluate(tiny_config(), workdir, progress=False)
    return workdir, result


# --- Pieces ---------------------------------------------------------------------------------


def test_renormalize_filters_matches_numpy():
    rng = np.random.default_rng(0)
    scales = np.array([0.01, 0.05, 0.2, 1.0, 3.0])
    params = {"conv": {"kernel": rng.standard_normal((3, 3, 2, 5)).astype(np.float32) * scales.astype(np.float32),
                       "bias": np.full(5, 7.0, np.float32)},
              "fc": {"kernel": np.full((4, 3), 5.0, np.float32), "bias": np.zeros(3, np.float32)}}
    out = jax.jit(train.renormalize_filters, static_argnums=1)(params, 0.1)
    expected = params["conv"]["kernel"].copy()
    for o in range(5):
        rms = np.sqrt(np.mean(expected[..., o] ** 2))
        if rms > 0.1:
            expected[..., o] *= 0.1 / rms
    np.testing.assert_allclose(out["conv"]["kernel"], expected, rtol=1e-6)
    np.testing.assert_array_equal(out["conv"]["kernel"][..., :2], params["conv"]["kernel"][..., :2])
    for leaf in ("conv/bias", "fc/kernel", "fc/bias"):
        layer, name = leaf.split("/")
        np.testing.assert_array_equal(out[layer][name], params[layer][name])


def test_schedules():
    lr = 0.4
    cosine = train.make_schedule(tiny_config(learning_rate=lr, schedule="cosine", num_epochs=2), 10)
    np.testing.assert_allclose([cosine(0), cosine(10), cosine(20)], [lr, lr / 2, 0], atol=1e-7)
    step = train.make_schedule(tiny_config(learning_rate=lr, schedule="step", num_epochs=3, decay_epochs=(1, 2)), 10)
    np.testing.assert_allclose([step(9), step(10), step(19), step(20)], [lr, lr / 10, lr / 10, lr / 100], rtol=1e-6)
    warm = train.make_schedule(tiny_config(learning_rate=lr, warmup_epochs=1, num_epochs=2), 10)
    np.testing.assert_allclose([warm(0), warm(5), warm(10), warm(19)], [0, lr / 2, lr, lr], rtol=1e-6)


def test_sgd_step_with_momentum_and_weight_decay_matches_numpy():
    config = tiny_config(optimizer="sgd", learning_rate=0.1, momentum=0.9, weight_decay=0.01)
    tx = train.make_optimizer(config, 10)
    w = {"fc": {"kernel": np.array([[1.0, -2.0]], np.float32), "bias": np.array([3.0, 4.0], np.float32)}}
    g = {"fc": {"kernel": np.array([[0.5, 0.5]], np.float32), "bias": np.array([1.0, -1.0], np.float32)}}
    state = tx.init(w)
    u1, state = tx.update(g, state, w)
    u2, _ = tx.update(g, state, w)
    # L2 decay on kernels only; momentum buffer m = g' + 0.9 m; update = -lr * m
    gk = g["fc"]["kernel"] + 0.01 * w["fc"]["kernel"]
    np.testing.assert_allclose(u1["fc"]["kernel"], -0.1 * gk, rtol=1e-6)
    np.testing.assert_allclose(u2["fc"]["kernel"], -0.1 * (gk + 0.9 * gk), rtol=1e-6)
    np.testing.assert_allclose(u2["fc"]["bias"], -0.1 * 1.9 * g["fc"]["bias"], rtol=1e-6)


def small_model_and_params():
    model = tiny_config().build_model()
    shapes = jax.eval_shape(model.init, jax.random.key(0))
    return model, jax.tree.map(lambda s: np.zeros(s.shape, s.dtype), shapes)


def bad_config(**overrides):
    return lambda tmp: tiny_config(**overrides)


# (id, callable of a scratch folder holding the plain file "file", what the ValueError must say)
BAD_INPUTS = [
    ("configs.learning_rate 0", bad_config(learning_rate=0.0), "learning_rate must be > 0, got 0.0"),
    ("configs.learning_rate nan", bad_config(learning_rate=float("nan")), "learning_rate must be a finite number, got nan"),
    ("configs.learning_rate str", bad_config(learning_rate="abc"), "Config.learning_rate must be a float, got str 'abc'"),
    ("configs.momentum 1", bad_config(momentum=1.0), "momentum must be in [0, 1), got 1.0"),
    ("configs.optimizer", bad_config(optimizer="rmsprop"), "unknown optimizer 'rmsprop'; expected one of ['sgd', 'adam']"),
    ("configs.schedule", bad_config(schedule="linear"), "unknown schedule 'linear'; expected one of"),
    ("configs.batch_size 0", bad_config(batch_size=0), "batch_size must be an integer >= 1, got 0"),
    ("configs.num_epochs float", bad_config(num_epochs=2.5), "Config.num_epochs must be an int, got float 2.5"),
    ("configs.log_every_steps str", bad_config(log_every_steps="5"), "Config.log_every_steps must be an int, got str '5'"),
    ("configs.decay_epochs order", bad_config(num_epochs=3, schedule="step", decay_epochs=(2, 1)),
     "decay_epochs must be increasing epochs in [warmup_epochs, num_epochs=3), got (2, 1)"),
    ("configs.decay_epochs int", bad_config(decay_epochs=30), "decay_epochs must be a tuple of epochs (integers), got 30"),
    ("configs.filter_radius -0.1", bad_config(filter_radius=-0.1), "filter_radius must be > 0, got -0.1"),
    ("configs.filter_radius str", bad_config(filter_radius="0.1"), "filter_radius must be None or a number, got '0.1'"),
    ("configs.num_devices 0", bad_config(num_devices=0), "num_devices must be None or an integer >= 1, got 0"),
    ("configs.max_steps float", bad_config(max_steps=2.5), "max_steps must be None or an integer >= 1, got 2.5"),
    ("configs.warmup_epochs", bad_config(warmup_epochs=1), "warmup_epochs must be in [0, num_epochs=1), got 1"),
    ("configs.dataset shape", bad_config(dataset="cifar10"), "takes images of shape (28, 28, 1), but cifar10 gives (32, 32, 3)"),
    ("configs.model_overrides key", bad_config(model_overrides={"depth": 3}), "has no setting 'depth'"),
    ("configs.model_overrides int", bad_config(model_overrides=3), "model_overrides must be a dict of build settings"),
    ("configs.model_edits", bad_config(model_edits={"fc5": 3}), "model_edits must be a dict of layer name to a dict"),
    ("configs.model_without str", bad_config(model_without="conv1"),
     "model_without must be a tuple of layer names, e.g. ('conv3', 'relu3'), got 'conv1'"),
    ("configs.name", bad_config(name=3), "name must be a non-empty string, got 3"),
    ("configs.unknown setting", bad_config(lr=0.1), "unknown config setting 'lr'"),
    ("configs.unknown config", lambda tmp: configs.get("mnist"), "unknown config 'mnist'; expected one of"),
    ("configs.augment str", bad_config(augment="false"), "Config.augment must be a bool, got str 'false'"),
    ("configs.augment mnist", bad_config(augment=True), "mnist_sample has no augmentation"),
    ("configs.ten_crop_eval", bad_config(ten_crop_eval=True), "ten_crop_eval is the ImageNet evaluation; mnist_sample"),
    ("configs.seed -1", bad_config(seed=-1), "seed must be an integer >= 0, got -1"),
    ("configs.seed float", bad_config(seed=1.5), "Config.seed must be an int, got float 1.5"),
    ("train.config str", lambda tmp: train.train_and_evaluate("mnist_cnn", tmp / "run"),
     "config must be a jaxvis.configs.Config (e.g. configs.get('mnist_cnn')), got 'mnist_cnn'"),
    ("train.workdir file", lambda tmp: train.train_and_evaluate(tiny_config(), tmp / "file"),
     "workdir must be a folder, but"),
    ("train.workdir under file", lambda tmp: train.train_and_evaluate(tiny_config(), tmp / "file" / "run"),
     "workdir must be a folder, but"),
    ("train.seeds int", lambda tmp: train.train_many(tiny_config(), tmp / "run", 3),
     "seeds must be distinct integers >= 0, at least one (one model per seed), got 3"),
    ("train.seeds key", lambda tmp: train.train_many(tiny_config(), tmp / "run", jax.random.key(0)),
     "seeds must be distinct integers >= 0, at least one (one model per seed), got a "),
    ("train.seeds repeated", lambda tmp: train.train_many(tiny_config(), tmp / "run", (1, 1)),
     "seeds must be distinct integers >= 0, at least one (one model per seed), got (1, 1)"),
    ("train.seeds negative", lambda tmp: train.train_many(tiny_config(), tmp / "run", (0, -1)), "got (0, -1)"),
    ("train.seeds empty", lambda tmp: train.train_many(tiny_config(), tmp / "run", ()), "at least one"),
    ("train.strategy", lambda tmp: train.train_many(tiny_config(), tmp / "run", (1, 2), strategy="pmap"),
     "unknown strategy 'pmap'; expected one of ['vmap', 'unroll', 'map', 'hybrid']"),
    ("train.checkpoint_card seeds", lambda tmp: train.checkpoint_card(tiny_config(), 3), "seeds must be distinct"),
    ("train.data_mesh str", lambda tmp: train.data_mesh("1"), "num_devices must be None or an integer >= 1, got '1'"),
    ("train.data_mesh too many", lambda tmp: train.data_mesh(99), "num_devices must be in [1, "),
    ("train.make_schedule 0", lambda tmp: train.make_schedule(tiny_config(), 0),
     "steps_per_epoch must be an integer >= 1, got 0"),
    ("train.make_optimizer float", lambda tmp: train.make_optimizer(tiny_config(), 2.5),
     "steps_per_epoch must be an integer >= 1, got 2.5"),
    ("train.renormalize_filters -1", lambda tmp: train.renormalize_filters({}, -1.0),
     "radius must be a finite number > 0, got -1.0"),
    ("train.renormalize_filters key", lambda tmp: train.renormalize_filters({}, jax.random.key(0)),
     "radius must be a finite number > 0, got a "),
    ("train.read_metrics missing", lambda tmp: train.read_metrics(tmp), "has no metrics.jsonl"),
    ("train.read_metrics file", lambda tmp: train.read_metrics(tmp / "file"), "workdir must be a folder, but"),
    ("train.evaluate list", lambda tmp: train.evaluate(*small_model_and_params(), [1, 2]),
     "batches must be jaxvis.data.Batches (dataset.batches(size) or data.load(...)), got list"),
    ("train.evaluate strategy", lambda tmp: train.evaluate(
        *small_model_and_params(), data.load("mnist_sample", "test", 500), strategy="pmap"),
     "unknown strategy 'pmap'"),
]


@over_bad_inputs(BAD_INPUTS)
def test_bad_input_is_a_value_error_naming_expected_and_given(tmp_path, call, message):
    (tmp_path / "file").write_text("not a folder")
    assert_refused(call, tmp_path, message)
    assert not (tmp_path / "run").exists()  # refused before any work


def test_every_shipped_config_is_valid():
    for name in configs.NAMES:
        assert configs.get(name).name == name


# --- Runs -----------------------------------------------------------------------------------


def test_one_epoch_lowers_the_loss(reference):
    workdir, result = reference
    losses = [line["loss"] for line in read_log(workdir)]
    assert [line["step"] for line in read_log(workdir)] == [5, 10, 15, 20, 25]
    assert losses[-1] < 0.75 * losses[0], losses
    assert result["eval"]["loss"] < 0.85 * np.log(10) and result["eval"]["top1"] > 0.3, result["eval"]


def test_evaluation_matches_numpy(reference):
    _, result = reference
    model = tiny_config().build_model()
    x, y = next(iter(data.load("mnist_sample", "test", 1000)))
    logits = jax.jit(lambda p, x: model.apply(p, model.normalize(x))[0])(result["params"], x)
    logits = np.asarray(logits, np.float64)
    logp = logits - logits.max(1, keepdims=True)
    logp -= np.log(np.exp(logp).sum(1, keepdims=True))
    rank = (logits > logits[np.arange(1000), y][:, None]).sum(1)
    np.testing.assert_allclose(result["eval"]["loss"], -logp[np.arange(1000), y].mean(), rtol=1e-5)
    np.testing.assert_allclose(result["eval"]["top1"], (rank == 0).mean(), atol=1e-6)
    np.testing.assert_allclose(result["eval"]["top5"], (rank < 5).mean(), atol=1e-6)


def test_ten_crop_evaluation_averages_the_crops_probabilities(tmp_path):
    rng = np.random.default_rng(0)
    for c, wnid in enumerate(("n0", "n1", "n2")):
        (tmp_path / "val" / wnid).mkdir(parents=True)
        for k in range(2):
            pixels = rng.integers(0, 256, (240 + 30 * k, 300, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(tmp_path / "val" / wnid / f"{k}.png")
    model = models.Model("tiny224", (models.conv("conv1", 4, 16, stride=16), models.relu("relu1"),
                                     models.flatten(), models.dense("fc", 3)), (224, 224, 3))
    shapes = jax.eval_shape(model.init, jax.random.key(0))
    params = jax.tree.map(lambda s: rng.standard_normal(s.shape).astype(np.float32) * 0.05, shapes)
    batches = data.load("imagenet2012", "validation", 4, data_dir=tmp_path, ten_crop=True)
    metrics = train.evaluate(model, params, batches)
    crops, labels = (np.concatenate(parts) for parts in zip(*batches))
    logits = np.asarray(model.apply(params, model.normalize(crops.reshape(-1, 224, 224, 3)))[0], np.float64)
    probs = np.exp(logits - logits.max(-1, keepdims=True))
    probs = (probs / probs.sum(-1, keepdims=True)).reshape(6, 10, 3).mean(1)
    np.testing.assert_allclose(metrics["loss"], -np.log(probs[np.arange(6), labels]).mean(), rtol=1e-5)
    np.testing.assert_allclose(metrics["top1"], (probs.argmax(1) == labels).mean(), atol=1e-6)
    assert metrics["top5"] == 1.0  # 3 classes


KILL_AT_STEP_15 = """
import json, os, signal, sys, time
from pathlib import Path
from jaxvis import configs, train
workdir, overrides = sys.argv[1], json.loads(sys.argv[2])
write = train._MetricsLog.write
def write_then_die(self, **record):
    write(self, **record)
    if record["step"] == 15:  # between the checkpoints of steps 10 and 20
        deadline = time.time() + 60
        while not (Path(workdir) / "checkpoints" / "10").is_dir() and time.time() < deadline:
            time.sleep(0.05)  # let the background save of step 10 land
        os.kill(os.getpid(), signal.SIGKILL)
train._MetricsLog.write = write_then_die
train.train_and_evaluate(configs.get("mnist_cnn", **overrides), workdir, progress=False)
"""


def test_killed_run_resumes_to_the_same_parameters(reference, tmp_path):
    ref_dir, ref = reference
    killed = run_python(KILL_AT_STEP_15, str(tmp_path), json.dumps(TINY))
    assert killed.returncode == -9, killed.stderr[-3000:]
    assert [line["step"] for line in read_log(tmp_path)] == [5, 10, 15]
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir() if p.name.isdigit()) == ["10"]
    resumed = train.train_and_evaluate(tiny_config(), tmp_path, progress=False)
    assert_trees_close(resumed["params"], ref["params"])
    assert [line["step"] for line in read_log(tmp_path)] == [5, 10, 15, 20, 25]  # step 15 logged once
    np.testing.assert_allclose([line["loss"] for line in read_log(tmp_path)],
                               [line["loss"] for line in read_log(ref_dir)], rtol=1e-5)


def test_damaged_latest_checkpoints_are_set_aside_and_the_run_resumes_before_them(reference, tmp_path, caplog):
    # the finished reference run's checkpoints are 10, 20 and 25; with 25 and 20 damaged the
    # rerun resumes from 10 and redoes steps 11-25 exactly
    ref_dir, ref = reference
    shutil.copytree(ref_dir, tmp_path, dirs_exist_ok=True)
    checkpoints = tmp_path / "checkpoints"
    damaged = {25: damage(checkpoints / "25", "data"), 20: damage(checkpoints / "20", "metadata")}
    with caplog.at_level(logging.WARNING, logger="jaxvis.checkpoint"):
        resumed = train.train_and_evaluate(tiny_config(), tmp_path, progress=False)
    notices = [r.getMessage() for r in caplog.records if r.name == "jaxvis.checkpoint"]
    assert len(notices) == 2, notices
    assert f"checkpoint {checkpoints / '25'} is damaged" in notices[0] and "resumes from step 20" in notices[0]
    assert "kept as 20.damaged, and the run resumes from step 10, the one before it" in notices[1]
    for step, hashes in damaged.items():  # kept as they were, under another name
        assert snapshot(checkpoints / f"{step}.damaged") == hashes
    assert checkpoint.saved_steps(tmp_path) == [10, 20, 25]
    assert_trees_close(resumed["params"], ref["params"])
    assert [line["step"] for line in read_log(tmp_path)] == [5, 10, 15, 20, 25]
    np.testing.assert_allclose([line["loss"] for line in read_log(tmp_path)],
                               [line["loss"] for line in read_log(ref_dir)], rtol=1e-5)


def test_restore_model_of_a_damaged_latest_step_names_the_latest_good_one(reference, tmp_path):
    shutil.copytree(reference[0], tmp_path, dirs_exist_ok=True)
    damage(tmp_path / "checkpoints" / "25", "data")
    with pytest.raises(ValueError, match=r"(?s)25 is damaged .*The latest step that reads back is 20: "
                                         r"restore_model\(.*, step=20\)"):
        checkpoint.restore_model(tmp_path)
    assert (tmp_path / "checkpoints" / "25").is_dir()  # reading never moves or changes files


KILL_IN_EXPORT = """
import os, signal, sys
from jaxvis import checkpoint
source, destination, when = sys.argv[1:]
save = checkpoint.Checkpointer.save
def save_then_die(self, step, state):
    save(self, step, state)  # orbax writes in the background
    if when == "before the rename":
        self.manager.wait_until_finished()
    os.kill(os.getpid(), signal.SIGKILL)
checkpoint.Checkpointer.save = save_then_die
checkpoint.export(source, destination, test_accuracy=0.5)
"""


@pytest.mark.parametrize("when", ["while writing", "before the rename"])
def test_export_killed_midway_leaves_no_destination_and_a_rerun_completes_it(reference, tmp_path, when):
    ref_dir, _ = reference
    destination = tmp_path / "export"
    killed = run_python(KILL_IN_EXPORT, str(ref_dir), str(destination), when)
    assert killed.returncode == -9, killed.stderr[-3000:]
    assert not destination.exists() and (tmp_path / ".export.partial").is_dir()
    checkpoint.export(ref_dir, destination, test_accuracy=0.5)  # the same call again
    checkpoint.export(ref_dir, tmp_path / "uninterrupted", test_accuracy=0.5)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["export", "uninterrupted"]  # no partial left
    (_, params, card), (_, oracle, oracle_card) = (checkpoint.restore_model(tmp_path / d)
                                                   for d in ("export", "uninterrupted"))
    assert card == oracle_card and card["step"] == 25 and card["test_accuracy"] == 0.5
    jax.tree.map(np.testing.assert_array_equal, params, oracle)
    for d in ("export", "uninterrupted"):
        assert sorted(p.name for p in (tmp_path / d).iterdir()) == ["25", "card.json"]
        assert sorted(p.name for p in (tmp_path / d / "25").iterdir() if p.is_dir()) == ["params"]


DATA_PARALLEL = """
import json, sys
import jax
from jaxvis import configs, train
assert jax.device_count() == 4, jax.devices()
train.train_and_evaluate(configs.get("mnist_cnn", **json.loads(sys.argv[2])), sys.argv[1], progress=False)
"""


def test_data_parallel_loss_curve_equals_one_device(reference, tmp_path):
    ref_dir, _ = reference
    assert train.data_mesh(1).size == 1
    run = run_python(DATA_PARALLEL, str(tmp_path), json.dumps({**TINY, "num_devices": 4}), devices=4)
    assert run.returncode == 0, run.stderr[-3000:]
    for split in ("train", "test"):
        four, one = read_log(tmp_path, split), read_log(ref_dir, split)
        assert [line["step"] for line in four] == [line["step"] for line in one]
        np.testing.assert_allclose([line["loss"] for line in four], [line["loss"] for line in one], rtol=1e-4)


@pytest.mark.parametrize("strategy", train.STRATEGIES)
def test_train_many_reproduces_single_runs(reference, tmp_path, strategy):
    # Adam's normalized steps amplify the float noise of the batched convolutions to ~1e-4
    # in 10 steps; another data order or dropout mask would move parameters by ~1e-2
    ref_dir, _ = reference
    many = train.train_many(tiny_config(max_steps=10), tmp_path, seeds=(1, 0), progress=False, strategy=strategy)
    _, ref_params, _ = checkpoint.restore_model(ref_dir, step=10)
    assert_trees_close(jax.tree.map(lambda p: p[1], many["params"]), ref_params, atol=5e-4)
    np.testing.assert_allclose([line["loss"][1] for line in read_log(tmp_path)],
                               [line["loss"] for line in read_log(ref_dir)[:2]], rtol=1e-5)
    differ = jax.tree.map(lambda p: float(np.abs(p[0] - p[1]).max()), many["params"])
    assert min(jax.tree.leaves(differ)) > 0
    assert len(read_log(tmp_path)[0]["loss"]) == 2
    _, params, card = checkpoint.restore_model(tmp_path)
    assert card["num_models"] == 2 and jax.tree.leaves(params)[0].shape[0] == 2
    with pytest.raises(ValueError, match="distinct integers"):
        train.train_many(tiny_config(), tmp_path / "x", seeds=(1, 1))
    with pytest.raises(ValueError, match="unknown strategy 'pmap'"):
        train.train_many(tiny_config(), tmp_path / "x", seeds=(1, 2), strategy="pmap")


def test_hybrid_convolutions_loop_over_models_and_keep_values_and_gradients():
    # vmap over models: the same values and gradients as the plain convolution, but the
    # program holds one ungrouped convolution per model instead of a grouped one
    from jaxvis import layers

    rng = np.random.default_rng(0)
    x = rng.standard_normal((3, 4, 9, 9, 2)).astype(np.float32)  # models, batch, H, W, C
    kernel = rng.standard_normal((3, 3, 3, 2, 5)).astype(np.float32)
    bias = rng.standard_normal((3, 5)).astype(np.float32)
    geometry = dict(stride=(2, 1), padding=((1, 2), (2, 2)), dilation=(1, 2))

    def loss(x, kernel, bias):
        y = layers.conv2d(x, kernel, bias, **geometry)
        return jnp.sum(jnp.sin(y)), y

    def step():  # a fresh function each time: JAX caches traces by function, not by context
        return jax.jit(jax.vmap(jax.value_and_grad(loss, (0, 1, 2), has_aux=True)))

    plain = step().lower(x, kernel, bias)
    with layers.per_model_convolutions():
        looped = step().lower(x, kernel, bias).compile()
    for a, b in zip(jax.tree.leaves(plain.compile()(x, kernel, bias)), jax.tree.leaves(looped(x, kernel, bias))):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-5)
    convolutions = re.findall(r"= f32\[[\d,]+\][^ ]* convolution\(.*", looped.as_text())
    assert len(convolutions) == 3 * 3  # per model: forward, input and kernel gradients
    assert not any("feature_group_count" in c or "batch_group_count" in c for c in convolutions)
    # outside the block (before and after it): one grouped convolution per op
    assert len(re.findall(r"stablehlo.convolution", plain.as_text())) == 3
    assert len(re.findall(r"stablehlo.convolution", step().lower(x, kernel, bias).as_text())) == 3


def test_metrics_log_after_a_kill_in_an_evaluation_a_cut_line_and_a_rerun(tmp_path):
    two_epochs = dict(num_epochs=2, checkpoint_every_steps=25, log_every_steps=25)
    train.train_and_evaluate(tiny_config(max_steps=25, **two_epochs), tmp_path, progress=False)
    log = tmp_path / train.METRICS_FILE
    assert [(r["step"], r["split"]) for r in train.read_metrics(tmp_path)] == [(25, "train"), (25, "test")]
    # as if killed in the epoch-end evaluation that follows the step-25 checkpoint, mid-line
    log.write_text(log.read_text().splitlines()[0] + "\n" + '{"step": 25, "epoch": 1.0, "spl')
    train.train_and_evaluate(tiny_config(**two_epochs), tmp_path, progress=False)
    records = [(r["step"], r["split"]) for r in train.read_metrics(tmp_path)]
    assert records == [(25, "train"), (25, "test"), (50, "train"), (50, "test")]
    train.train_and_evaluate(tiny_config(**two_epochs), tmp_path, progress=False)  # finished: nothing new
    assert [(r["step"], r["split"]) for r in train.read_metrics(tmp_path)] == records


def test_class_folders_must_match_the_model_outputs(tmp_path):
    write_imagenet(tmp_path / "imagenet2012")
    config = configs.get("zfnet_imagenet", model_overrides={"num_classes": 3}, batch_size=2, num_devices=1)
    with pytest.raises(ValueError, match=r"zfnet has 3 outputs, but .*imagenet2012 has 2 classes \(n01, n02, ...\)"):
        train.train_and_evaluate(config, tmp_path / "run", data_dir=tmp_path, progress=False)
    assert not (tmp_path / "run").exists()


def test_divergence_before_any_checkpoint_lets_the_workdir_start_again(tmp_path):
    with pytest.raises(FloatingPointError, match="No checkpoint was saved before it") as info:
        train.train_and_evaluate(tiny_config(optimizer="sgd", learning_rate=1e12, log_every_steps=1), tmp_path,
                                 progress=False)
    assert "diverged at step" in str(info.value)
    result = train.train_and_evaluate(tiny_config(max_steps=10), tmp_path, progress=False)  # other settings
    assert result["step"] == 10 and checkpoint.read_card(tmp_path / "checkpoints")["config"]["learning_rate"] == 2e-3


def test_divergence_stops_at_the_step_and_keeps_the_last_good_checkpoint(tmp_path):
    # the warm-up makes the first step's learning rate 0, the next ones enormous
    config = tiny_config(optimizer="sgd", learning_rate=1e8, warmup_epochs=0.8, log_every_steps=1,
                         checkpoint_every_steps=1)
    with pytest.raises(FloatingPointError, match=r"diverged at step \d+") as info:
        train.train_and_evaluate(config, tmp_path, progress=False)
    bad = int(re.search(r"diverged at step (\d+)", str(info.value)).group(1))
    _, params, card = checkpoint.restore_model(tmp_path)
    assert card["step"] == bad - 1 and f"last good checkpoint is step {bad - 1}" in str(info.value)
    assert all(np.isfinite(p).all() for p in jax.tree.leaves(params))
