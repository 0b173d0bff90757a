"""Checkpoints: periodic saves of a training run, resuming it, and one-call restore for analysis.

The only module that imports orbax. A checkpoint directory holds orbax's step folders
(``<step>/params`` and, while training, ``<step>/opt_state``) and ``card.json``, which
names the model and its build overrides (for shipped models also the accuracy, data,
command, training time and code commit). ``restore_model(path)`` rebuilds the model from
the card and loads its parameters. Reading never changes the files: a damaged checkpoint
or one made for another architecture raises ``ValueError`` and leaves them as they were.
Resuming a run whose latest step is damaged moves that step aside (``<step>.damaged``,
never deleted) and resumes from the step before it, with a notice. ``export`` writes a
params-only copy into a hidden sibling folder and renames it into place, so a killed
export leaves no partial destination and a rerun starts it again.

After ``jax.distributed.initialize`` orbax synchronizes the processes in every save and
restore, so every process must call these functions together (process 0 alone would wait
for the others forever); only process 0 writes ``card.json``.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import sys
import traceback
from pathlib import Path
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp
from jax.experimental import multihost_utils

from jaxvis import _checks, models
from jaxvis._io import folder, write_text_atomically

CARD = "card.json"
DAMAGED_SUFFIX = ".damaged"
log = logging.getLogger(__name__)

# orbax warns "Given directory is read only" on every read-only manager, which is how
# restore_model opens a checkpoint by design; drop that one message, keep the others.
logging.getLogger("absl").addFilter(lambda record: not str(record.msg).startswith("Given directory is read only"))


def _late_callback(report) -> bool:
    """Whether an unraisable exception is tensorstore handing a finished read to orbax's event
    loop after orbax closed it: when one read of a damaged checkpoint fails, orbax raises
    (and ``_restore`` reports the damage) and closes its loop while the other reads of the
    same step are still under way. Nothing waits for those reads; their reports are noise."""
    return (isinstance(report.exc_value, RuntimeError) and str(report.exc_value) == "Event loop is closed"
            and any(frame.name == "call_soon_threadsafe" for frame in traceback.extract_tb(report.exc_traceback)))


def _without_late_callbacks(hook):
    def quiet(report):
        if not _late_callback(report):
            hook(report)

    return quiet


sys.unraisablehook = _without_late_callbacks(sys.unraisablehook)


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


# the entries of a card that jaxvis reads, where present, and what each must be; "model" is
# required; the others (accuracy, data, command, ...) are free
_CARD_ENTRIES = {
    "model": ("a zoo model name (a string)", lambda v: isinstance(v, str)),
    "model_overrides": ("an object of build settings", lambda v: isinstance(v, dict)),
    "model_edits": ("an object of layer names to objects of settings",
                    lambda v: isinstance(v, dict) and all(isinstance(e, dict) for e in v.values())),
    "model_without": ("a list of layer names",
                      lambda v: isinstance(v, (list, tuple)) and all(isinstance(e, str) for e in v)),
    "num_models": ("null or an integer >= 1", lambda v: v is None or (_is_int(v) and v >= 1)),
    "seeds": ("a list of integers", lambda v: isinstance(v, (list, tuple)) and all(_is_int(e) for e in v)),
    "step": ("an integer >= 0", lambda v: _is_int(v) and v >= 0),
    "dataset": ("a dataset name (a string)", lambda v: isinstance(v, str)),
    "config": ("an object of settings", lambda v: isinstance(v, dict)),
}


def _check_card(card, where: str = "the card") -> None:
    """Raise unless ``card`` is an object with a ``model`` entry and each entry jaxvis reads
    (``model_overrides``, ``model_edits``, ``model_without``, ``num_models``, ``seeds``,
    ``step``, ``dataset``, ``config``) has its type; the message names ``where`` and the entry."""
    if not isinstance(card, dict):
        raise ValueError(f"{where} must be a JSON object with at least a 'model' entry, got {type(card).__name__} "
                         f"{card!r:.100}")
    if "model" not in card:
        raise ValueError(f"{where} has no 'model' entry (the zoo model to build); its entries are {sorted(card)}")
    for key, (expected, ok) in _CARD_ENTRIES.items():
        if key in card and not ok(card[key]):
            raise ValueError(f"{where}: '{key}' must be {expected}, got {type(card[key]).__name__} {card[key]!r:.100}")


def read_card(directory) -> dict[str, Any]:
    """The ``card.json`` of a checkpoint directory, its entries checked."""
    path = _checkpoint_dir(directory) / CARD
    if not path.is_file():
        raise ValueError(f"{directory} is not a jaxvis checkpoint: it has no {CARD}")
    try:
        card = json.loads(path.read_bytes().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"{path} is not a valid JSON file ({type(e).__name__}: {e}); restore it from a copy") from e
    _check_card(card, str(path))
    return card


def write_card(directory, card: dict[str, Any]) -> None:
    _check_card(card)
    write_text_atomically(Path(directory) / CARD, json.dumps(card, indent=2, sort_keys=True) + "\n")


def model_from_card(card: dict[str, Any]) -> models.Model:
    """Build the card's model (zoo name, overrides, edits, removed layers); JSON lists
    become tuples again."""
    _check_card(card)

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
    """The checkpoints of one run: ``save`` every so often, ``restore_latest`` on resume.

    Args:
      directory: where the step folders and ``card.json`` go.
      card: what the run trains (model, settings). If the directory already has
        checkpoints with a different card, ``ValueError``: a run resumes only with what it
        started with. Without checkpoints (a run that stopped before its first) the card
        is replaced.
      keep: how many of the latest checkpoints to keep.
      items: the parts of the state saved as separate orbax items.

    Use it as a context manager (or call ``close``): closing waits for the saves in the
    background, so none is left half-written when the process ends.
    """

    def __init__(self, directory, card: dict[str, Any], keep: int = 2, items=("params", "opt_state")):
        _checks.count("keep", keep)
        if isinstance(items, str) or not items or not all(isinstance(k, str) for k in items):
            raise ValueError(f"items must be a tuple of item names such as ('params', 'opt_state'), got {items!r}")
        _check_card(card, "the run's card")
        self.directory = folder(directory, "checkpoint directory", create=False).absolute()
        if self.directory.is_dir() and saved_steps(self.directory) and (self.directory / CARD).is_file():
            differences = _differences(read_card(self.directory), card)
            if differences:
                raise ValueError(f"{self.directory} holds checkpoints of another run ({'; '.join(differences)}); "
                                 "use another workdir, or the same settings to resume")
        elif jax.process_index() == 0:  # no checkpoint yet (a run that failed before its first): a new card
            write_card(self.directory, card)
        self.items, self.keep = tuple(items), keep
        self.manager = self._open()

    def _open(self) -> ocp.CheckpointManager:
        # cleanup: a run killed while saving leaves a temporary folder, never a step folder
        return ocp.CheckpointManager(self.directory, options=ocp.CheckpointManagerOptions(
            max_to_keep=self.keep, create=True, cleanup_tmp_directories=True), item_handlers=_handlers(self.items))

    def __enter__(self) -> Checkpointer:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

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

    def restore_latest(self, like: dict[str, Any], sharding=None) -> tuple[int, dict[str, Any] | None]:
        """``(step, items)`` of the latest step that reads back (see :meth:`restore`), or
        ``(0, None)`` without one.

        A damaged step is moved aside to ``<step>.damaged`` (kept for a look, never
        deleted) with a notice naming it and the step resumed from instead; training again
        from the step before redoes the lost steps exactly. A step saved for another
        architecture is a ``ValueError``, as in :meth:`restore`.
        """
        while (step := self.latest_step()) is not None:
            try:
                return step, self.restore(step, like, sharding)
            except _Damaged as err:
                self._set_aside(step, err)
        return 0, None

    def _set_aside(self, step: int, err: _Damaged) -> None:
        self.manager.close()
        _barrier(f"jaxvis_damaged_{step}")  # every process has tried it: all see the same folders
        source = self.directory / str(step)
        target = source.with_name(source.name + DAMAGED_SUFFIX)
        count = 1
        while target.exists():  # a step of this number set aside before
            count += 1
            target = source.with_name(f"{source.name}{DAMAGED_SUFFIX}-{count}")
        if jax.process_index() == 0:
            os.rename(source, target)
        _barrier(f"jaxvis_set_aside_{step}")
        self.manager = self._open()
        earlier = self.latest_step()
        if jax.process_index() == 0:
            log.warning(f"checkpoint {source} is damaged ({err.reason}); it is kept as {target.name}, and the run "
                        f"resumes from {f'step {earlier}, the one before it' if earlier is not None else 'the start'}")

    def close(self) -> None:
        try:
            self.manager.wait_until_finished()
        finally:
            self.manager.close()


class _Damaged(ValueError):
    """A step whose files cannot be read back; ``reason`` is what orbax said (without
    tensorstore's spec of the read, a long JSON object)."""

    def __init__(self, where: Path, reason: str):
        reason = reason.split(" [tensorstore_spec=")[0]
        super().__init__(f"checkpoint {where} is damaged and cannot be read ({reason}); its files were left as "
                         "they were")
        self.where, self.reason = where, reason


def _barrier(name: str) -> None:
    """Over several processes, wait until every one gets here (process 0 changed files)."""
    if jax.process_count() > 1:
        multihost_utils.sync_global_devices(name)


def _restore(manager, directory: Path, step: int, like: dict[str, Any], sharding=None) -> dict[str, Any]:
    where = directory / str(step)
    try:
        metadata = manager.item_metadata(step)
        found = {k: _leaf_shapes(metadata[k].tree) for k in like}
    except Exception as e:
        raise _Damaged(where, f"its metadata: {type(e).__name__}: {e}") from e
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
        raise _Damaged(where, f"{type(e).__name__}: {e}") from e
    return {k: restored[k] for k in like}


def _checkpoint_dir(path) -> Path:
    """``path`` itself, or its ``checkpoints`` folder when given a training workdir; a
    ``ValueError`` when it is missing or a file."""
    path = folder(path, "checkpoint", create=False)
    if not path.exists():
        raise ValueError(f"checkpoint {path} does not exist: expected a folder with {CARD}, or a training workdir")
    if not (path / CARD).is_file() and (path / "checkpoints" / CARD).is_file():
        return path / "checkpoints"
    return path


def saved_steps(path) -> list[int]:
    """The steps of the complete checkpoints in a training workdir (or its
    ``checkpoints`` folder), ascending; orbax names each step's folder by its number
    and gives unfinished ones a temporary suffix."""
    path = folder(path, "checkpoint", create=False)
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

    Raises:
      ValueError: no such checkpoint or step, a damaged card or step (the message names
        the latest step that reads back), or parameters of another architecture.
    """
    _checks.count("step", step, minimum=0, optional=True)
    directory = _checkpoint_dir(path).absolute()
    card = read_card(directory)
    try:
        model = model_from_card(card)
    except ValueError as e:
        raise ValueError(f"{directory / CARD} describes a model that cannot be built: {e}") from e
    like = jax.eval_shape(model.init, jax.random.key(0))
    if card.get("num_models"):
        like = jax.tree.map(lambda x: jax.ShapeDtypeStruct((card["num_models"], *x.shape), x.dtype), like)
    manager = ocp.CheckpointManager(directory, options=ocp.CheckpointManagerOptions(
        read_only=True, create=False, save_interval_steps=0), item_handlers=_handlers(("params", "opt_state")))
    try:
        steps = sorted(manager.all_steps())
        if not steps:
            raise ValueError(f"{directory} has a {CARD} but no complete checkpoint step folder")
        chosen = steps[-1] if step is None else int(step)
        if chosen not in steps:
            raise ValueError(f"{directory} has no checkpoint for step {chosen}; it has steps {steps}")
        try:
            params = _restore(manager, directory, chosen, {"params": like})["params"]
        except _Damaged as err:
            if step is not None or len(steps) == 1:
                raise
            good = next((s for s in reversed(steps[:-1]) if _reads(manager, directory, s, like)), None)
            raise ValueError(f"{err}. " + (f"The latest step that reads back is {good}: "
                                           f"restore_model({str(path)!r}, step={good})" if good is not None
                                           else f"Nor do the earlier steps {steps[:-1]}")) from err
    finally:
        manager.close()
    return model, params, {**card, "step": chosen}


def _reads(manager, directory: Path, step: int, like) -> bool:
    """Whether the params of ``step`` read back."""
    try:
        _restore(manager, directory, step, {"params": like})
    except _Damaged:
        return False
    return True


def check_export_destination(destination) -> None:
    """Raise unless ``destination`` is missing or an empty folder: an export never overwrites.

    Over several processes (which must all call this) the answer is one for all: if any
    process refuses the destination, every one raises, and none waits for the others.
    """
    try:
        destination = folder(destination, "export destination", create=False).absolute()
        problem = (f"export destination {destination} is not empty; remove it first"
                   if destination.exists() and any(destination.iterdir()) else "")
    except ValueError as err:  # not a path, or a file
        problem = str(err)
    if jax.process_count() > 1:
        refused = np.asarray(multihost_utils.process_allgather(np.bool_(bool(problem))))
        if refused.any() and not problem:
            problem = (f"export destination {destination} is refused on processes "
                       f"{np.flatnonzero(refused).tolist()}; every process must see the same (shared) destination")
    if problem:
        raise ValueError(problem)


def export(path, destination, **card_entries) -> Path:
    """Write the parameters of a checkpoint, without optimizer state, to ``destination``.

    The destination's card is the source's card updated with ``card_entries`` (process
    0's, over several processes, which must all call this). The files are written into
    the hidden sibling ``.<destination>.partial`` and renamed into place once complete: a
    killed export leaves no ``destination``, and a rerun replaces what it left.
    """
    check_export_destination(destination)  # over several processes also their barrier before process 0 writes
    destination = Path(destination).absolute()
    _, params, card = restore_model(path)
    partial = destination.with_name(f".{destination.name}.partial")
    if jax.process_index() == 0 and partial.exists():  # what a killed export left
        shutil.rmtree(partial)
    _barrier("jaxvis_export_start")
    with Checkpointer(partial, {**card, **card_entries}, keep=1, items=("params",)) as ckpt:
        ckpt.save(card["step"], {"params": params})
    if jax.process_index() == 0:
        os.replace(partial, destination)  # also over an empty destination folder
    _barrier("jaxvis_export_done")
    return destination
