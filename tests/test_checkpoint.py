"""jaxvis.checkpoint: round trips, one-call restore, and refusing bad checkpoints untouched."""

import hashlib
import json
from pathlib import Path

import jax
import numpy as np
import optax
import pytest

from jaxvis import checkpoint, data, models

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


# a failed read can leave a tensorstore callback to orbax's closed event loop: harmless noise
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
@pytest.mark.parametrize("damage", ["data", "metadata"])
def test_damaged_checkpoint_is_refused_untouched(tmp_path, damage):
    save_small(tmp_path)
    params_dir = tmp_path / "7" / "params"
    if damage == "data":
        targets = [p for p in params_dir.rglob("*") if p.is_file() and p.parent.name == "d"]
    else:
        targets = [params_dir / "_METADATA"]
    for p in targets:
        p.write_bytes(b"\x00garbage" * 3)
    before = snapshot(tmp_path)
    with pytest.raises(ValueError, match="damaged"):
        checkpoint.restore_model(tmp_path)
    assert snapshot(tmp_path) == before


def test_missing_card_or_step(tmp_path):
    with pytest.raises(ValueError, match="no card.json"):
        checkpoint.restore_model(tmp_path)
    save_small(tmp_path)
    with pytest.raises(ValueError, match=r"no checkpoint for step 3; it has steps \[7\]"):
        checkpoint.restore_model(tmp_path, step=3)


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
