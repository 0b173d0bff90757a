"""Jobs over several processes (hosts) with ``jax.distributed``: the command-line flags, the
settings every process must agree on, meeting points that fail instead of hanging, and
the share of a job's work each process takes.

Every multi-process script (``train.py``, ``deconvnet.py``, ``occlusion.py``) takes
``--coordinator-address``, ``--num-processes``, ``--process-id`` and ``--timeout``
(:func:`add_arguments`) and starts with :func:`initialize`, before anything asks JAX about
devices (``deconvnet.py`` and ``occlusion.py`` through :func:`run_job`). Then
:func:`check_devices` compares the number of devices each process has, :func:`same_folder`
the output folder they see, and :func:`agree` the settings of every process (model,
parameters' fingerprint, data and its fingerprint, options); a disagreement is a
``ValueError`` on every process, naming the processes and settings that differ. Work is
shared out as contiguous blocks of a fixed list of parts (:func:`share`): the parts are
fixed by the job, not by the number of processes, so a rerun with any number of processes
reuses the parts a killed run finished.

Two kinds of exchange. Small control messages (settings, which parts are finished, the
meeting points of :func:`barrier`) go through the coordinator's key-value store, polled,
so that a process that does not arrive within ``--timeout`` seconds of the first is named
in a ``TimeoutError`` on the others (one that died, or one stuck) instead of a hang. Array
results go through :func:`allgather` (``multihost_utils.process_allgather``, an XLA
all-gather; gloo over TCP on CPUs), always right after a meeting point, so that every
process is known to be there when the collective starts. :func:`gathered_bytes` counts
what this process has put into all-gathers.

Failures: a job's body runs inside :func:`fail_together`. A process whose body raises
posts its error to the store, and the others stop at their next meeting point with an
error naming it (``ConnectionAbortedError``); a process that died is named by the
``TimeoutError`` of the meeting it misses. A failed process then ends without JAX's
orderly shutdown (a barrier the dead never reach, after which JAX aborts), process 0 last,
as the coordinator lives in it. Between meeting points, :func:`_watch` (a thread of each
process) keeps a sign of life in the store and ends its process, naming the other, when
another gave none for ``--timeout`` seconds (it died or was killed) or posted a failure:
before JAX's coordination service would find the dead one by its heartbeats (60 s later)
and abort the others with its own message. SIGTERM is a failure like any other. A process
that loses process 0 to SIGKILL or a crash is aborted by JAX at once, with JAX's message
("the leader task was preempted/died"): JAX's callback for that case cannot be a Python
function (the runtime aborts converting its status).

The key-value store is reached through ``jax._src.distributed.global_state.client``, as
orbax does: ``jax.distributed`` has no public name for it.
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import hashlib
import itertools
import json
import os
import signal
import sys
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import jax
import numpy as np
from jax.experimental import multihost_utils

from jaxvis import _checks
from jaxvis._io import folder

DEFAULT_TIMEOUT = 300.0
WATCH_EVERY = 1.0  # seconds between two signs of life of a process (see _watch)
RESUME = "Finished parts are kept: run the same command again to resume"
_meetings = itertools.count()  # every process meets in the same order, so the n-th meeting has one key
_state = {"timeout": DEFAULT_TIMEOUT, "gathered_bytes": 0, "failed": None, "done": False, "missing": set(),
          "lock": threading.Lock()}
_FAILED, _LEFT, _ALIVE = "jaxvis/failed/", "jaxvis/left/", "jaxvis/alive/"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags of a job over several processes: each process gets the same command with its
    own ``--process-id``."""
    group = parser.add_argument_group("several processes (hosts), with jax.distributed")
    group.add_argument("--coordinator-address", help="host:port of process 0 (the same on every process)")
    group.add_argument("--num-processes", type=int, help="how many processes take part")
    group.add_argument("--process-id", type=int, help="this process: 0, 1, ..., num-processes - 1")
    group.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT,
                       help="seconds a process waits for the others to start, and at a meeting point for the "
                            "others to get there, before it fails naming them; JAX takes a process that sends no "
                            f"heartbeat for 60 s longer for dead (default {DEFAULT_TIMEOUT:g})")


def initialize(args: argparse.Namespace) -> None:
    """Start ``jax.distributed`` from :func:`add_arguments`' flags; nothing without
    ``--coordinator-address`` (one process). Call it first: anything that asks JAX about
    devices would start it as a single process."""
    address, count, index = args.coordinator_address, args.num_processes, args.process_id
    timeout = getattr(args, "timeout", DEFAULT_TIMEOUT)
    _checks.number("--timeout", timeout, 0, above=True)
    if address is None:
        if count not in (None, 1) or index not in (None, 0):
            raise ValueError(f"--num-processes {count} and --process-id {index} need --coordinator-address "
                             "host:port (process 0's)")
        return
    if count is None or index is None:
        raise ValueError(f"--coordinator-address needs --num-processes and --process-id, got --num-processes "
                         f"{count} and --process-id {index}")
    if count < 1 or not 0 <= index < count:
        raise ValueError(f"expected --num-processes >= 1 and 0 <= --process-id < --num-processes, got "
                         f"--num-processes {count} and --process-id {index}")
    if ":" not in address or not address.rsplit(":", 1)[1].isdigit():
        raise ValueError(f"--coordinator-address must be host:port, got {address!r}")
    _state["timeout"] = float(timeout)
    # JAX's coordination service takes a process that sends no heartbeat for this long for
    # dead and aborts the others with its own message: later than _watch names it
    jax.distributed.initialize(address, count, index, initialization_timeout=max(1, round(timeout)),
                               heartbeat_timeout_seconds=round(timeout) + 60,
                               shutdown_timeout_seconds=max(1, round(timeout)))
    atexit.register(_leave)  # after JAX's own exit handlers, so it runs before them
    if count > 1:
        threading.Thread(target=_watch, name="jaxvis-watch", daemon=True).start()


def _watch() -> None:
    """Every ``WATCH_EVERY`` seconds, on a thread of its own: give a sign of life (a counter
    in the store), and end this process, naming the one responsible, when another process
    gave none for ``--timeout`` seconds (it died or was killed) or posted a failure, even
    while this one is computing far from a meeting point. JAX's callback for a process its
    heartbeats find dead cannot be a Python function (the runtime aborts casting its
    status), so this comes first instead: JAX's heartbeat check waits 60 s longer."""
    client, me = _client(), jax.process_index()
    others = set(range(jax.process_count())) - {me}
    changed = {p: (None, time.monotonic()) for p in others}  # each one's last count, and when it changed
    for beat in itertools.count():
        if _state["failed"] or _state["done"]:
            return
        try:
            client.key_value_set(f"{_ALIVE}{me}", str(beat), allow_overwrite=True)
            counts, failed = _by_process(client.key_value_dir_get(_ALIVE)), _failures(client)
        except Exception as err:  # noqa: BLE001 (whatever the runtime raises: the coordinator is gone)
            if not _state["done"]:
                _end_here(str(_lost("while computing", err)))
            return
        now = time.monotonic()
        for p in others:
            if counts.get(p) != changed[p][0]:
                changed[p] = (counts.get(p), now)
        silent = sorted(p for p in others if now - changed[p][1] > _state["timeout"])
        if failed:
            p, reason = min(failed.items())
            _end_here(f"process {p} failed ({reason}); process {me} stops too. {RESUME}")
        elif silent:
            _state["missing"].update(silent)
            _end_here(f"process{'es' if len(silent) > 1 else ''} {', '.join(map(str, silent))} gave no sign of "
                      f"life for {_state['timeout']:g} s (died, killed, or its machine is lost); process {me} stops "
                      f"too. {RESUME}")
        time.sleep(WATCH_EVERY)


def _end_here(message: str) -> None:
    """From :func:`_watch`: print ``message`` as a script's error and end the process (see
    :func:`_leave`), unless the main thread is already failing with its own message."""
    _mark_failed("watch")
    if _state["failed"] == "watch":
        print(f"error: {message}", file=sys.stderr, flush=True)
        _leave()


def _leave() -> None:
    """At exit after a failure, end the process without JAX's orderly shutdown: that waits
    for every process at a barrier, which a dead one never reaches, and then aborts.
    Process 0 holds the coordinator, without which the others' JAX runtime aborts them, so
    it waits (up to ``--timeout``) until every other process not found missing has left."""
    _state["done"] = True  # _watch stops: the processes are leaving
    if not _state["failed"]:
        return
    sys.stdout.flush()
    sys.stderr.flush()
    with contextlib.suppress(Exception):  # the coordinator may be gone
        client, me = _client(), jax.process_index()
        client.key_value_set(f"{_LEFT}{me}", "")
        waiting = set(range(1, jax.process_count())) - _state["missing"] if me == 0 else set()
        deadline = time.monotonic() + _state["timeout"]
        while waiting and time.monotonic() < deadline:
            waiting -= set(_by_process(client.key_value_dir_get(_LEFT)))
            time.sleep(0.1)
        time.sleep(0.2)  # for the last one to be gone before the coordinator is
    os._exit(1)


def run_job(job: Callable[[argparse.Namespace, Path], None], args: argparse.Namespace, out) -> None:
    """A script's job over the processes of :func:`add_arguments`' flags: start them
    (:func:`initialize`), refuse unequal devices (:func:`check_devices`), check that every
    process writes to the same folder ``out`` (:func:`same_folder`), and run
    ``job(args, out)`` with the processes failing together (:func:`fail_together`)."""
    initialize(args)
    with fail_together():
        check_devices()
        job(args, same_folder(out))


@contextlib.contextmanager
def fail_together():
    """Run a job's body: an exception in it is told to the other processes, which stop at
    their next meeting point with an error naming this process and its message, instead
    of waiting there for ``--timeout``; the process then ends without JAX's orderly
    shutdown (see :func:`_leave`)."""
    several = jax.process_count() > 1 and threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _terminated) if several else None
    try:
        yield
    except BaseException as err:
        if jax.process_count() > 1:
            _mark_failed("main")
            with contextlib.suppress(Exception):  # the coordinator may be gone: nothing to tell
                _client().key_value_set(f"{_FAILED}{jax.process_index()}", f"{type(err).__name__}: {err}")
        raise
    finally:
        if several:
            signal.signal(signal.SIGTERM, previous)


def _terminated(signum, frame) -> None:
    """SIGTERM (``kill``, a scheduler) as an error, which :func:`fail_together` tells the others."""
    raise InterruptedError(f"process {jax.process_index()} was stopped by {signal.Signals(signum).name}")


def is_main() -> bool:
    """Whether this is process 0, the one that writes the job's shared outputs."""
    return jax.process_index() == 0


def share(count: int, index: int | None = None, processes: int | None = None) -> range:
    """The items of ``range(count)`` that process ``index`` of ``processes`` takes (default:
    this one): a contiguous block, the blocks in process order and their sizes differing by
    at most one."""
    _checks.count("count", count, minimum=0)
    index = jax.process_index() if index is None else index
    processes = jax.process_count() if processes is None else processes
    _checks.count("processes", processes)
    _checks.count("index", index, minimum=0)
    if index >= processes:
        raise ValueError(f"index must be below processes={processes}, got {index}")
    return range(index * count // processes, (index + 1) * count // processes)


def check_devices() -> None:
    """Raise (on every process: all see the same device list) unless every process has as many
    devices: each takes an equal share of the work."""
    per_process = [sum(d.process_index == p for d in jax.devices()) for p in range(jax.process_count())]
    if len(set(per_process)) > 1:
        raise ValueError(f"the processes have {per_process} devices (process 0, 1, ...), but each takes an equal "
                         "share of the work: give every process the same number of devices (CUDA_VISIBLE_DEVICES, "
                         "XLA_FLAGS=--xla_force_host_platform_device_count)")


def fingerprint(*trees) -> str:
    """A short hash of the arrays in ``trees`` (their shapes, dtypes and bytes), to compare
    parameters or data between processes and runs."""
    digest = hashlib.blake2b(digest_size=8)
    for leaf in jax.tree.leaves(trees):
        leaf = np.asarray(leaf.addressable_data(0) if isinstance(leaf, jax.Array) else leaf)
        digest.update(f"{leaf.shape}{leaf.dtype}".encode())
        digest.update(np.ascontiguousarray(leaf).tobytes())
    return digest.hexdigest()


def local(tree):
    """The arrays of ``tree`` as this process's copy, on its first device: parameters
    restored over several processes are replicated over all their devices, and a
    computation on such arrays would involve every process."""
    return jax.tree.map(lambda a: a.addressable_data(0) if isinstance(a, jax.Array) else a, tree)


def agree(settings: dict, what: str = "settings") -> None:
    """Raise on every process unless every process has the same ``settings`` (JSON-able): the
    message names the processes and the settings that differ."""
    if not isinstance(settings, dict):
        raise ValueError(f"settings must be a dict, got {type(settings).__name__}")
    problem = disagreement(gather_json(json.loads(json.dumps(settings, default=str)), f"agree on {what}"), what)
    if problem:
        raise ValueError(problem)


def disagreement(per_process: list[dict], what: str = "settings") -> str:
    """What differs between the processes' ``per_process`` settings (process order), or ""."""
    lines = []
    for key in sorted({k for settings in per_process for k in settings}):
        values = [settings.get(key, "<missing>") for settings in per_process]
        if any(v != values[0] for v in values):
            lines.append(f"{key}: " + ", ".join(f"process {p} {v!r}" for p, v in enumerate(values)))
    if not lines:
        return ""
    return (f"the {len(per_process)} processes disagree on the {what} ({'; '.join(lines)}); every process must run "
            "the same command (but for --process-id) on the same data")


def barrier(name: str) -> None:
    """Wait until every process gets here (also after a failure, which each process reports
    itself); fail with ``TimeoutError`` naming the processes that are not here ``--timeout``
    seconds after this one arrived."""
    gather_json(None, name)


def gather_json(value, name: str) -> list:
    """Every process's ``value`` (JSON-able), in process order, through the coordinator's
    key-value store; a meeting point as :func:`barrier` is."""
    if jax.process_count() == 1:
        return [value]
    client = _client()
    prefix = f"jaxvis/{next(_meetings)}/{name.replace('/', '_')}/"
    began, pause = time.monotonic(), 0.005
    try:
        client.key_value_set(prefix + str(jax.process_index()), json.dumps(value))
    except Exception as err:  # noqa: BLE001 (whatever the runtime raises: the coordinator is gone)
        raise _stop(_lost(f"at {name!r}", err)) from None
    while True:
        try:
            entries = _by_process(client.key_value_dir_get(prefix))
            failed = _failures(client)
        except Exception as err:  # noqa: BLE001
            raise _stop(_lost(f"at {name!r}", err)) from None
        if len(entries) == jax.process_count():
            return [json.loads(entries[p]) for p in range(jax.process_count())]
        if failed:
            p, reason = min(failed.items())
            raise _stop(ConnectionAbortedError(f"process {p} failed ({reason}); process {jax.process_index()} "
                                               f"stops too, at {name!r}. {RESUME}"))
        if time.monotonic() - began > _state["timeout"]:
            missing = sorted(set(range(jax.process_count())) - set(entries))
            _state["missing"].update(missing)
            raise _stop(TimeoutError(
                f"process{'es' if len(missing) > 1 else ''} {', '.join(map(str, missing))} did not reach {name!r} "
                f"within {_state['timeout']:g} s of process {jax.process_index()} (died, failed or stuck: see its "
                f"output); this process stops too. {RESUME}"))
        time.sleep(pause)
        pause = min(2 * pause, 0.5)


def _client():
    from jax._src.distributed import global_state  # noqa: PLC0415 (the store has no public name)

    return global_state.client


def _by_process(entries) -> dict[int, str]:
    """``{process: text}`` of key-value entries whose keys end in a process number."""
    return {int(key.rsplit("/", 1)[1]): text for key, text in entries}


def _failures(client) -> dict[int, str]:
    """The errors that processes posted when their job failed (:func:`fail_together`)."""
    return _by_process(client.key_value_dir_get(_FAILED))


def _mark_failed(by: str) -> None:
    """Mark this process as failed (it ends without JAX's orderly shutdown), by the main
    thread or by :func:`_watch`, unless it is already. When the watch ends the process, the
    main thread waits here for the end instead of failing with a second message."""
    with _state["lock"]:
        _state["failed"] = _state["failed"] or by
    while by == "main" and _state["failed"] == "watch":
        time.sleep(1)


def _stop(err: Exception) -> Exception:
    """``err``, after marking this process as failed."""
    _mark_failed("main")
    return err


def _lost(where: str, err) -> ConnectionError:
    """This process lost the coordinator ``where`` (``at 'meeting'``, ``while computing``)."""
    reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    return ConnectionError(f"process {jax.process_index()} lost the coordinator, process 0, {where} ({reason}): "
                           f"process 0 died or stopped (see its output); this process stops too. {RESUME}")


def allgather(tree, name: str):
    """Every process's arrays in ``tree`` (equal shapes on every process), stacked on a new
    leading process axis, as NumPy arrays; after a :func:`barrier` named ``name``."""
    barrier(name)
    tree = jax.tree.map(np.asarray, tree)
    _state["gathered_bytes"] += sum(leaf.nbytes for leaf in jax.tree.leaves(tree))
    if jax.process_count() == 1:
        return jax.tree.map(lambda a: a[None], tree)
    return jax.tree.map(np.asarray, multihost_utils.process_allgather(tree))


def gathered_bytes() -> int:
    """Bytes this process has put into :func:`allgather` so far (each process receives every
    other process's)."""
    return _state["gathered_bytes"]


def same_folder(path) -> Path:
    """``path`` (created), after checking that every process sees the same folder there: a
    job's processes share their results through it. Otherwise a ``ValueError`` on every
    process names those that see another folder (a path relative to another working
    directory, or a disk that is not shared)."""
    path = folder(path, "the output folder").absolute()
    if jax.process_count() == 1:
        return path
    token = uuid.uuid4().hex
    if is_main():  # before the others learn its name
        (path / f".jaxvis_shared_{token}").touch()
    mark = path / f".jaxvis_shared_{gather_json(token, 'output folder token')[0]}"
    seen = gather_json([str(path), mark.exists()], "output folder check")
    if is_main():
        mark.unlink()
    blind = [p for p, (_, found) in enumerate(seen) if not found]
    if blind:
        raise ValueError(f"processes {blind} do not see the output folder of process 0 ({seen[0][0]}; process "
                         f"{blind[0]} has {seen[blind[0]][0]}): every process must write to one shared folder (an "
                         "absolute path on a shared disk)")
    return path
