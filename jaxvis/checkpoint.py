"""Checkpoints: periodic saves of a training run, resuming it, and one-call restore for analysis.

The only module that imports orbax. A checkpoint directory holds orbax's step folders
(``<step>/params`` and, while training, ``<step>/opt_state``) and ``card.json``, which
names the model and its build overrides (for shipped models also the accuracy, data,
command, training time and code commit). ``restore_model(path)`` rebuilds the model from
the card and loads its parameters. Reading never changes the files: a damaged checkpoint
or one made for another architecture raises ``ValueError`` and leaves them as they were.

After ``jax.distributed.initialize`` orbax synchronizes the processes in every save and
restore, so every process must call these functions together (process 0 alone would wait
for the others forever); only process 0 writes ``card.json``.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp
from jax.experimental import multihost_utils

from jaxvis import models
from jaxvis._io import write_text_atomically

CARD = "card.json"

# orbax warns "Given directory is read only" on every read-only manager, which is how
# restore_model opens a checkpoint by design; drop that one message, keep the others.
logging.getLogger("absl").addFilter(lambda record: not str(record.msg).startswith("Given directory is read only"))


def read_card(directory) -> dict[str, Any]:
    """The ``card.json`` of a checkpoint directory."""
    path = Path(directory) / CARD
    if not path.is_file():
        raise ValueError(f"{directory} is not a jaxvis checkpoint: it has no {CARD}")
    try:
        card = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{path} is not valid JSON: {e}") from e
    if not isinstance(card, dict) or "model" not in card:
        raise ValueError(f"{path} must be a JSON object with at least a 'model' entry, got {card!r}")
    return card


def write_card(directory, card: dict[str, Any]) -> None:
    write_text_atomically(Path(directory) / CARD, json.dumps(card, indent=2, sort_keys=True) + "\n")


def model_from_card(card: dict[str, Any]) -> models.Model:
    """Build the card's model (zoo name, overrides, edits, removed layers); JSON lists
    become tuples again."""
    def tuples(d):
        return {k: tuple(v) if isinstance(v, list) else v for k, v in d.items()}

    edits = {name: tuples(change) for name, change in card.get("model_edits", {}).items()}
    return models.variant(card["model"], tuples(card.get("model_overrides", {})), edits,
                          tuple(card.get("model_without", ())))


def _flat(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat = {}
    for key, value in tree.items():
        if isinstance(value, dict) and value:
            flat.update(_flat(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def _differences(found: dict[str, Any], wanted: dict[str, Any]) -> list[str]:
    """Where two cards differ, as ``key: found vs wanted`` (JSON values, so tuples equal lists)."""
    found, wanted = (_flat(json.loads(json.dumps(card))) for card in (found, wanted))
    return [f"{k}: {found.get(k)!r} there, {wanted.get(k)!r} here" for k in sorted(found.keys() | wanted.keys())
            if found.get(k) != wanted.get(k)]


def _leaf_shapes(tree) -> dict[str, tuple[int, ...]]:
    """Shape of each leaf by path; namedtuple fields and list items are named alike, as
    orbax's metadata turns the former into the latter."""
    leaves = jax.tree_util.tree_flatten_with_path(tree, is_leaf=lambda x: hasattr(x, "shape"))[0]
    return {"/".join(str(getattr(k, "key", getattr(k, "idx", getattr(k, "name", k)))) for k in path): tuple(leaf.shape)
            for path, leaf in leaves}


def _handlers(items):
    return {k: ocp.StandardCheckpointHandler() for k in items}


def _default_sharding() -> jax.sharding.Sharding:
    """Where restored arrays go: the first device in a single process; otherwise replicated
    over the devices of all processes, so that each process holds all of them."""
    if jax.process_count() == 1:
        return jax.sharding.SingleDeviceSharding(jax.devices()[0])
    mesh = jax.sharding.Mesh(np.asarray(jax.devices()), ("all",))
    return jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())


def _abstract(tree, sharding=None):
    sharding = sharding or _default_sharding()
    return jax.tree.map(lambda x: jax.ShapeDtypeStruct(np.shape(x), x.dtype, sharding=sharding), tree)


class Checkpointer:
    """The checkpoints of one run: ``save`` every so often, ``restore`` the latest on resume.

    Args:
      directory: where the step folders and ``card.json`` go.
      card: what the run trains (model, settings). If the directory already has
        checkpoints with a different card, ``ValueError``: a run resumes only with what it
        started with. Without checkpoints (a run that stopped before its first) the card
        is replaced.
      keep: how many of the latest checkpoints to keep.
      items: the parts of the state saved as separate orbax items.
    """

    def __init__(self, directory, card: dict[str, Any], keep: int = 2, items=("params", "opt_state")):
        self.directory = Path(directory).absolute()
        if self.directory.is_dir() and saved_steps(self.directory) and (self.directory / CARD).is_file():
            differences = _differences(read_card(self.directory), card)
            if differences:
                raise ValueError(f"{self.directory} holds checkpoints of another run ({'; '.join(differences)}); "
                                 "use another workdir, or the same settings to resume")
        elif jax.process_index() == 0:  # no checkpoint yet (a run that failed before its first): a new card
            write_card(self.directory, card)
        self.items = tuple(items)
        # cleanup: a run killed while saving leaves a temporary folder, never a step folder
        self.manager = ocp.CheckpointManager(self.directory, options=ocp.CheckpointManagerOptions(
            max_to_keep=keep, create=True, cleanup_tmp_directories=True), item_handlers=_handlers(self.items))

    def latest_step(self) -> int | None:
        return self.manager.latest_step()

    def save(self, step: int, state: dict[str, Any]) -> None:
        """Save ``state[item]`` for each item (in the background; ``close`` waits)."""
        self.manager.save(step, args=ocp.args.Composite(
            **{k: ocp.args.StandardSave(state[k]) for k in self.items}), force=True)

    def restore(self, step: int, like: dict[str, Any], sharding=None) -> dict[str, Any]:
        """The items saved at ``step``, with the shapes, dtypes and tree structure of ``like``."""
        self.manager.wait_until_finished()
        return _restore(self.manager, self.directory, step, like, sharding)

    def close(self) -> None:
        self.manager.wait_until_finished()
        self.manager.close()


def _restore(manager, directory: Path, step: int, like: dict[str, Any], sharding=None) -> dict[str, Any]:
    where = directory / str(step)
    try:
        metadata = manager.item_metadata(step)
        found = {k: _leaf_shapes(metadata[k].tree) for k in like}
    except Exception as e:
        raise ValueError(f"checkpoint {where} is damaged: its metadata cannot be read ({type(e).__name__}: {e}). "
                         "The files were left as they were; delete that step folder to use an earlier one.") from e
    for item, tree in like.items():
        expected = _leaf_shapes(tree)
        if found[item] != expected:
            diff = sorted(set(found[item].items()) ^ set(expected.items()))[:6]
            raise ValueError(f"checkpoint {where} was made for another architecture: its {item} "
                             f"differ from the model's in {diff} (found vs expected shapes)")
    try:
        restored = manager.restore(step, args=ocp.args.Composite(
            **{k: ocp.args.StandardRestore(_abstract(v, sharding)) for k, v in like.items()}))
    except Exception as e:
        raise ValueError(f"checkpoint {where} is damaged and cannot be read ({type(e).__name__}: {e}). "
                         "The files were left as they were; delete that step folder to use an earlier one.") from e
    return {k: restored[k] for k in like}


def _checkpoint_dir(path) -> Path:
    """``path`` itself, or its ``checkpoints`` folder when given a training workdir."""
    path = Path(path)
    if not (path / CARD).is_file() and (path / "checkpoints" / CARD).is_file():
        return path / "checkpoints"
    return path


def saved_steps(path) -> list[int]:
    """The steps of the complete checkpoints in a training workdir (or its
    ``checkpoints`` folder), ascending; orbax names each step's folder by its number
    and gives unfinished ones a temporary suffix."""
    path = Path(path)
    directory = path / "checkpoints" if (path / "checkpoints").is_dir() else path
    if not directory.is_dir():
        raise ValueError(f"{path} is neither a training workdir nor a checkpoint directory")
    return sorted(int(p.name) for p in directory.iterdir() if p.is_dir() and p.name.isdigit())


def restore_model(path, step: int | None = None):
    """The model, parameters and card of a checkpoint (a shipped one or a training workdir).

    Args:
      path: a checkpoint directory (with ``card.json``), or a training workdir.
      step: which step; default the latest.

    Returns:
      ``(model, params, card)``; ``card["step"]`` is the step restored. Runs of several
      models (``card["num_models"]``) give parameters with a leading model axis. Over
      several processes every process calls this, and gets the parameters replicated.
    """
    directory = _checkpoint_dir(path).absolute()
    card = read_card(directory)
    model = model_from_card(card)
    like = jax.eval_shape(model.init, jax.random.key(0))
    if card.get("num_models"):
        like = jax.tree.map(lambda x: jax.ShapeDtypeStruct((card["num_models"], *x.shape), x.dtype), like)
    manager = ocp.CheckpointManager(directory, options=ocp.CheckpointManagerOptions(
        read_only=True, create=False, save_interval_steps=0), item_handlers=_handlers(("params", "opt_state")))
    try:
        steps = manager.all_steps()
        if not steps:
            raise ValueError(f"{directory} has a {CARD} but no complete checkpoint step folder")
        step = max(steps) if step is None else step
        if step not in steps:
            raise ValueError(f"{directory} has no checkpoint for step {step}; it has steps {sorted(steps)}")
        params = _restore(manager, directory, step, {"params": like})["params"]
    finally:
        manager.close()
    return model, params, {**card, "step": step}


def check_export_destination(destination) -> None:
    """Raise unless ``destination`` is missing or empty: an export never overwrites.

    Over several processes (which must all call this) the answer is one for all: if any
    process sees a non-empty destination, every one raises, and none waits for the others.
    """
    destination = Path(destination).absolute()
    problem = (f"export destination {destination} is not empty; remove it first"
               if destination.exists() and any(destination.iterdir()) else "")
    if jax.process_count() > 1:
        refused = np.asarray(multihost_utils.process_allgather(np.bool_(bool(problem))))
        if refused.any() and not problem:
            problem = (f"export destination {destination} is not empty on processes "
                       f"{np.flatnonzero(refused).tolist()}; every process must see the same (shared) destination")
    if problem:
        raise ValueError(problem)


def export(path, destination, **card_entries) -> Path:
    """Write the parameters of a checkpoint, without optimizer state, to ``destination``.

    The destination's card is the source's card updated with ``card_entries`` (process
    0's, over several processes, which must all call this).
    """
    destination = Path(destination).absolute()
    check_export_destination(destination)  # over several processes also their barrier before process 0 writes
    _, params, card = restore_model(path)
    ckpt = Checkpointer(destination, {**card, **card_entries}, keep=1, items=("params",))
    ckpt.save(card["step"], {"params": params})
    ckpt.close()
    return destination
