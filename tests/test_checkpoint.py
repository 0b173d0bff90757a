"""jaxvis.checkpoint: round trips, one-call restore, and refusing bad checkpoints untouched."""

import hashlib
import json
import shutil
from pathlib import Path

import jax
import numpy as np
import optax
import pytest

from jaxvis import checkpoint, data, models
from test_data import assert_refused, over_bad_inputs

ROOT = Path(__file__).resolve().parent.parent
SMALL = {"widths": (4, 8), "hidden": 16}


def snapshot(directory: Path) -> dict[str, str]:
    return {str(p.relative_to(directory)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(directory.rglob("*")) if p.is_file()}


def random_params(model: models.Model, seed: int = 0):
    """Parameters of the model's shapes, without compiling its initializer."""
    rng = np.random.default_rng(seed)
    shapes = jax.eval_shape(model.init, jax.random.key(0))
    return jax.tree.map(lambda s: rng.standard_normal(s.shape).astype(np.float32), shapes)


def save_small(directory: Path, overrides=SMALL, step=7):
    model = models.build("mnist_cnn", **overrides)
    params = random_params(model, 3)
    card = {"model": "mnist_cnn", "model_overrides": overrides, "note": "test"}
    ckpt = checkpoint.Checkpointer(directory, card, items=("params",))
    ckpt.save(step, {"params": params})
    ckpt.close()
    return model, params


def damage(step_dir: Path, what: str) -> dict[str, str]:
    """Overwrite the array data (``data``) or the tree metadata (``metadata``) of a step's
    params with garbage; the step's files' new hashes."""
    params = step_dir / "params"
    targets = [p for p in params.rglob("*") if p.is_file() and p.parent.name == "d"] if what == "data" else [
        params / "_METADATA"]
    for p in targets:
        p.write_bytes(b"\x00garbage" * 3)
    return snapshot(step_dir)


def assert_trees_equal(a, b):
    jax.tree.map(np.testing.assert_array_equal, a, b)


def test_restore_model_rebuilds_model_and_params(tmp_path):
    model, params = save_small(tmp_path)
    restored_model, restored, card = checkpoint.restore_model(tmp_path)
    assert restored_model == model and card["step"] == 7 and card["note"] == "test"
    assert_trees_equal(restored, params)
    assert json.loads((tmp_path / checkpoint.CARD).read_text())["model_overrides"] == {"widths": [4, 8], "hidden": 16}


def test_training_state_round_trip_keeps_optimizer_state(tmp_path):
    model = models.build("mnist_cnn", **SMALL)
    params = random_params(model)
    tx = optax.adamw(1e-3)
    rng = np.random.default_rng(1)
    opt_state = jax.tree.map(lambda x: (rng.random(np.shape(x)) * 9).astype(x.dtype), tx.init(params))
    ckpt = checkpoint.Checkpointer(tmp_path, {"model": "mnist_cnn", "model_overrides": SMALL})
    ckpt.save(3, {"params": params, "opt_state": opt_state})
    like = {"params": random_params(model, 1), "opt_state": tx.init(params)}
    restored = ckpt.restore(3, like)
    ckpt.close()
    assert_trees_equal(restored, {"params": params, "opt_state": opt_state})
    assert jax.tree.structure(restored["opt_state"]) == jax.tree.structure(opt_state)


def test_export_drops_optimizer_state(tmp_path):
    model = models.build("mnist_cnn", **SMALL)
    params = random_params(model)
    tx = optax.sgd(0.1, momentum=0.9)
    ckpt = checkpoint.Checkpointer(tmp_path / "run", {"model": "mnist_cnn", "model_overrides": SMALL})
    ckpt.save(5, {"params": params, "opt_state": tx.init(params)})
    ckpt.close()
    checkpoint.export(tmp_path / "run", tmp_path / "out", test_accuracy=0.5)
    assert sorted(p.name for p in (tmp_path / "out" / "5").iterdir() if p.is_dir()) == ["params"]
    _, restored, card = checkpoint.restore_model(tmp_path / "out")
    assert card["test_accuracy"] == 0.5
    assert_trees_equal(restored, params)
    with pytest.raises(ValueError, match="not empty"):
        checkpoint.export(tmp_path / "run", tmp_path / "out")


def test_checkpoint_of_another_architecture_is_refused_untouched(tmp_path):
    save_small(tmp_path)
    card = json.loads((tmp_path / checkpoint.CARD).read_text())
    card["model_overrides"]["hidden"] = 32  # the card now disagrees with the files
    (tmp_path / checkpoint.CARD).write_text(json.dumps(card))
    before = snapshot(tmp_path)
    with pytest.raises(ValueError, match=r"another architecture.*fc5"):
        checkpoint.restore_model(tmp_path)
    assert snapshot(tmp_path) == before


def test_resuming_into_another_architecture_is_refused(tmp_path):
    save_small(tmp_path)
    before = snapshot(tmp_path)
    with pytest.raises(ValueError, match=r"model_overrides.dilation: None there, 2 here.*use another workdir"):
        checkpoint.Checkpointer(tmp_path, {"model": "mnist_cnn", "model_overrides": {"dilation": 2}})
    assert snapshot(tmp_path) == before


# a failed read leaves tensorstore reads that report to orbax's closed event loop: not shown
@pytest.mark.filterwarnings("error::pytest.PytestUnraisableExceptionWarning")
@pytest.mark.parametrize("what", ["data", "metadata"])
def test_damaged_checkpoint_is_refused_untouched(tmp_path, what):
    save_small(tmp_path)
    damage(tmp_path / "7", what)
    before = snapshot(tmp_path)
    with pytest.raises(ValueError, match="damaged"):
        checkpoint.restore_model(tmp_path)
    assert snapshot(tmp_path) == before


def with_card(tmp: Path, text) -> Path:
    """A copy of the scratch checkpoint whose card.json holds ``text`` (bytes, or an object as JSON)."""
    copy = tmp / f"copy{len(list(tmp.iterdir()))}"
    shutil.copytree(tmp / "ckpt", copy)
    (copy / checkpoint.CARD).write_bytes(text if isinstance(text, bytes) else json.dumps(text).encode())
    return copy


CARD = {"model": "mnist_cnn", "model_overrides": SMALL}

# (id, callable of a scratch folder holding "file" (a plain file) and "ckpt" (a checkpoint of
# step 7), what the ValueError must say)
BAD_INPUTS = [
    ("restore_model step str", lambda tmp: checkpoint.restore_model(tmp / "ckpt", step="7"),
     "step must be None or an integer >= 0, got '7'"),
    ("restore_model step negative", lambda tmp: checkpoint.restore_model(tmp / "ckpt", step=-1),
     "step must be None or an integer >= 0, got -1"),
    ("restore_model step absent", lambda tmp: checkpoint.restore_model(tmp / "ckpt", step=3),
     "has no checkpoint for step 3; it has steps [7]"),
    ("restore_model path int", lambda tmp: checkpoint.restore_model(3),
     "checkpoint must be a path (str or os.PathLike), got int 3"),
    ("restore_model path file", lambda tmp: checkpoint.restore_model(tmp / "file"), "checkpoint must be a folder, but"),
    ("restore_model missing", lambda tmp: checkpoint.restore_model(tmp / "nowhere"),
     "does not exist: expected a folder with card.json, or a training workdir"),
    ("restore_model no card", lambda tmp: checkpoint.restore_model(tmp), "is not a jaxvis checkpoint: it has no card.json"),
    ("card not UTF-8", lambda tmp: checkpoint.restore_model(with_card(tmp, b"\xff\xfe\x00garbage")),
     "card.json is not a valid JSON file (UnicodeDecodeError"),
    ("card not JSON", lambda tmp: checkpoint.restore_model(with_card(tmp, b"{model: mnist_cnn")),
     "card.json is not a valid JSON file (JSONDecodeError"),
    ("card a list", lambda tmp: checkpoint.restore_model(with_card(tmp, ["mnist_cnn"])),
     "card.json must be a JSON object with at least a 'model' entry, got list"),
    ("card without model", lambda tmp: checkpoint.restore_model(with_card(tmp, {"modle": "mnist_cnn"})),
     "card.json has no 'model' entry (the zoo model to build); its entries are ['modle']"),
    ("card model int", lambda tmp: checkpoint.restore_model(with_card(tmp, {"model": 3})),
     "card.json: 'model' must be a zoo model name (a string), got int 3"),
    ("card overrides list", lambda tmp: checkpoint.restore_model(with_card(tmp, {**CARD, "model_overrides": [4, 8]})),
     "card.json: 'model_overrides' must be an object of build settings, got list [4, 8]"),
    ("card edits", lambda tmp: checkpoint.restore_model(with_card(tmp, {**CARD, "model_edits": {"fc5": 12}})),
     "card.json: 'model_edits' must be an object of layer names to objects of settings, got dict"),
    ("card without str", lambda tmp: checkpoint.restore_model(with_card(tmp, {**CARD, "model_without": "conv4"})),
     "card.json: 'model_without' must be a list of layer names, got str 'conv4'"),
    ("card num_models str", lambda tmp: checkpoint.restore_model(with_card(tmp, {**CARD, "num_models": "2"})),
     "card.json: 'num_models' must be null or an integer >= 1, got str '2'"),
    ("card seeds", lambda tmp: checkpoint.restore_model(with_card(tmp, {**CARD, "seeds": 0})),
     "card.json: 'seeds' must be a list of integers, got int 0"),
    ("card unknown model", lambda tmp: checkpoint.restore_model(with_card(tmp, {"model": "mnist_cn"})),
     "card.json describes a model that cannot be built: unknown model 'mnist_cn'"),
    ("card unknown setting", lambda tmp: checkpoint.restore_model(
        with_card(tmp, {"model": "mnist_cnn", "model_overrides": {"depth": 3}})),
     "card.json describes a model that cannot be built: model 'mnist_cnn' has no setting 'depth'"),
    ("read_card file", lambda tmp: checkpoint.read_card(tmp / "file"), "checkpoint must be a folder, but"),
    ("model_from_card", lambda tmp: checkpoint.model_from_card({"model": "mnist_cnn", "model_overrides": 3}),
     "the card: 'model_overrides' must be an object of build settings, got int 3"),
    ("write_card list", lambda tmp: checkpoint.write_card(tmp / "new", [1]),
     "the card must be a JSON object with at least a 'model' entry, got list"),
    ("saved_steps file", lambda tmp: checkpoint.saved_steps(tmp / "file"), "checkpoint must be a folder, but"),
    ("saved_steps missing", lambda tmp: checkpoint.saved_steps(tmp / "nowhere"),
     "is neither a training workdir nor a checkpoint directory"),
    ("Checkpointer keep 0", lambda tmp: checkpoint.Checkpointer(tmp / "new", CARD, keep=0),
     "keep must be an integer >= 1, got 0"),
    ("Checkpointer items str", lambda tmp: checkpoint.Checkpointer(tmp / "new", CARD, items="params"),
     "items must be a tuple of item names such as ('params', 'opt_state'), got 'params'"),
    ("Checkpointer card", lambda tmp: checkpoint.Checkpointer(tmp / "new", {"modl": "mnist_cnn"}),
     "the run's card has no 'model' entry"),
    ("Checkpointer directory file", lambda tmp: checkpoint.Checkpointer(tmp / "file" / "checkpoints", CARD),
     "checkpoint directory must be a folder, but"),
    ("Checkpointer another run", lambda tmp: checkpoint.Checkpointer(tmp / "ckpt", {**CARD, "note": "other"}),
     "holds checkpoints of another run (note: 'test' there, 'other' here)"),
    ("export destination file", lambda tmp: checkpoint.export(tmp / "ckpt", tmp / "file"),
     "export destination must be a folder, but"),
    ("export destination not empty", lambda tmp: checkpoint.export(tmp / "ckpt", tmp / "ckpt"),
     "is not empty; remove it first"),
    ("check_export_destination int", lambda tmp: checkpoint.check_export_destination(3),
     "export destination must be a path (str or os.PathLike), got int 3"),
]


@pytest.fixture(scope="module")
def scratch(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("bad_inputs")
    save_small(tmp / "ckpt")
    (tmp / "file").write_text("not a folder")
    return tmp


@over_bad_inputs(BAD_INPUTS)
def test_bad_input_is_a_value_error_naming_expected_and_given(scratch, call, message):
    before = snapshot(scratch / "ckpt")
    assert_refused(call, scratch, message)
    assert snapshot(scratch / "ckpt") == before and not (scratch / "new").exists()


def test_shipped_mnist_model_classifies_the_sample():
    model, params, card = checkpoint.restore_model(ROOT / "checkpoints" / "mnist_cnn")
    assert card["model"] == "mnist_cnn" and card["test_accuracy"] >= 0.992
    assert all(p.dtype == np.float32 for p in jax.tree.leaves(params))
    x, y = next(iter(data.load("mnist_sample", "test", 1000)))
    logits = jax.jit(lambda p, x: model.apply(p, model.normalize(x))[0])(params, x)
    assert (np.asarray(logits.argmax(-1)) == y).mean() >= 0.99


def test_shipped_fashion_model_restores_with_its_normalization():
    model, params, card = checkpoint.restore_model(ROOT / "checkpoints" / "fashion_cnn")
    assert card["dataset"] == "fashion_mnist" and card["test_accuracy"] >= 0.91
    assert model.mean == (0.2860,) and model.std == (0.3530,)
    assert model.num_params(params) == model.num_params()


def test_card_rebuilds_an_ablated_variant():
    from jaxvis import configs
    config = configs.Config(name="ablated", model="mnist_cnn", dataset="mnist_sample", train_split="test",
                            model_overrides=SMALL, model_without=("conv4", "relu4"),
                            model_edits={"fc5": {"features": 12}, "conv1": {"kernel": 5, "padding": 2}})
    card = json.loads(json.dumps(config.model_card()))  # as read back from card.json
    model = checkpoint.model_from_card(card)
    assert model.layers == config.build_model().layers
    assert "conv4" not in model.names and model.shapes["fc5"] == (12,) and model.layers[0].kernel == (5, 5)
    expected = 5 * 5 * 1 * 4 + 4 + 3 * 3 * 4 * 4 + 4 + 3 * 3 * 4 * 8 + 8 + 7 * 7 * 8 * 12 + 12 + 12 * 10 + 10
    assert model.num_params() == expected
    with pytest.raises(ValueError, match="layer of mnist_cnn-without-conv4-relu4.*'conv4'"):
        configs.replace(config, model_edits={"conv4": {"features": 3}})


def test_imagenet_factories_take_other_channels_with_their_statistics():
    model = models.build("zfnet", channels=1, mean=(0.3,), std=(0.4,), input_size=64, num_classes=10)
    assert model.input_shape == (64, 64, 1) and model.mean == (0.3,)
    with pytest.raises(ValueError, match="zfnet with 1 input channels needs mean and std with 1 values each"):
        models.build("zfnet", channels=1)


def test_saved_steps_lists_only_complete_step_folders(tmp_path):
    for name in ("250", "10", "30.orbax-checkpoint-tmp-17"):
        (tmp_path / "checkpoints" / name).mkdir(parents=True)
    (tmp_path / "checkpoints" / "card.json").write_text("{}")
    assert checkpoint.saved_steps(tmp_path) == [10, 250]
