"""Training over two processes (``jax.distributed`` on CPU, with jax's default gloo
collectives) against one process.

``scripts/train.py`` runs as two local processes with one CPU device each, which share each
batch. The oracle is one process with two CPU devices over the same global batches: the same
arithmetic, without ``jax.distributed``. (One device differs from both by the float noise of
splitting each batch, ~1e-4 after 50 Adam steps; tests/test_train.py checks that part.) A
hang (a collective or orbax barrier reached by one process only) fails the test at its
timeout, with both processes killed, instead of blocking.
"""

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import jax
import numpy as np
import pytest

from jaxvis import checkpoint, configs, train

ROOT = Path(__file__).resolve().parents[2]
# 1,000 sample images: 25 steps of 40 an epoch; evaluation in 2 batches of 500 (250 a process)
SETTINGS = dict(model_overrides={"widths": (8, 16), "hidden": 32}, dataset="mnist_sample", train_split="test",
                batch_size=40, eval_batch_size=500, num_epochs=2, optimizer="adam", learning_rate=2e-3,
                schedule="constant", log_every_steps=5, checkpoint_every_steps=25)
TIMEOUT = 240


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def train_command(workdir, *args: str, **overrides) -> list[str]:
    """``scripts/train.py`` on ``mnist_cnn`` with ``SETTINGS`` and ``overrides``."""
    sets = [arg for k, v in {**SETTINGS, **overrides}.items() for arg in ("--set", f"{k}={v!r}")]
    return [sys.executable, str(ROOT / "scripts" / "train.py"), "--config", "mnist_cnn", "--workdir", str(workdir),
            "--no-progress", *sets, *args]


def run_two_processes(workdir, *args: str, cwds=(None, None), **overrides) -> list[tuple[int, str]]:
    """Run ``scripts/train.py`` as processes 0 and 1 of one job (in ``cwds``) with ``SETTINGS``
    and ``overrides``; the exit status and output of each (see :func:`run_processes`)."""
    command = train_command(workdir, *args, "--coordinator-address", f"localhost:{free_port()}", "--num-processes",
                            "2", **overrides)
    return run_processes([[*command, "--process-id", str(i)] for i in range(2)], cwds=cwds)


def process_env(**extra) -> dict:
    """The environment of a test's JAX process: CPU only, this checkout first, no inherited XLA flags."""
    return {**{k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}, "JAX_PLATFORMS": "cpu",
            "PYTHONPATH": str(ROOT), "PYTHONFAULTHANDLER": "1", **extra}


def run_processes(commands, envs=None, cwds=None, timeout: float = TIMEOUT, watch=None) -> list[tuple[int, str]]:
    """Run ``commands`` at once (each with its env of ``envs``, default :func:`process_env`,
    and working directory of ``cwds``); the exit status and output of each. ``watch(procs)``
    is called every 0.1 s while any runs (to kill one, say). Fails the test, with every
    output, if they are not done within ``timeout`` seconds (all are killed, after printing
    their stacks)."""
    envs = envs or [process_env()] * len(commands)
    cwds = cwds or [None] * len(commands)
    logs = [tempfile.TemporaryFile("w+") for _ in commands]  # not pipes: a full one would block the process
    procs = [subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=cwd)
             for command, env, log, cwd in zip(commands, envs, logs, cwds)]
    deadline, hung = time.monotonic() + timeout, False
    while any(p.poll() is None for p in procs):
        if time.monotonic() > deadline:
            hung = True
            for p in procs:  # faulthandler prints where each one waits, then it aborts
                if p.poll() is None:
                    p.send_signal(signal.SIGABRT)
            time.sleep(5)
            for p in procs:
                p.kill()
            break
        if watch is not None:
            watch(procs)
        time.sleep(0.1)
    results = []
    for proc, log in zip(procs, logs):
        log.seek(0)
        results.append((proc.wait(), log.read()))
        log.close()
    if hung:
        pytest.fail(f"the processes did not finish within {timeout} s (a hang?)\n{report(results)}")
    return results


def report(results) -> str:
    return "\n".join(f"--- process {i} (exit status {rc}):\n{out[-3000:]}" for i, (rc, out) in enumerate(results))


def train_two_processes(workdir, *args: str, **overrides) -> list[str]:
    """:func:`run_two_processes` that must succeed; the outputs."""
    results = run_two_processes(workdir, *args, **overrides)
    assert all(rc == 0 for rc, _ in results), report(results)
    return [out for _, out in results]


def train_one_process_two_devices(workdir, *args: str, **overrides) -> str:
    """The oracle: ``scripts/train.py`` with ``SETTINGS`` and ``overrides`` in one process with
    two CPU devices; its output."""
    env = process_env(XLA_FLAGS="--xla_force_host_platform_device_count=2")
    run = subprocess.run(train_command(workdir, *args, **overrides), env=env, capture_output=True, text=True,
                         timeout=TIMEOUT)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    return run.stdout


def test_two_processes_resume_and_export_like_one_process(tmp_path):
    # the first run stops at the end of epoch 1, after its evaluation; the second resumes there
    # (only process 0 keeps the log that says so), trains epoch 2 and exports
    two, one = tmp_path / "two", tmp_path / "one"
    train_two_processes(two / "run", max_steps=25)
    outputs = train_two_processes(two / "run", "--export", str(two / "export"), max_steps=None)
    train_one_process_two_devices(one / "run", "--export", str(one / "export"))

    logs = [train.read_metrics(d / "run") for d in (two, one)]
    assert [(r["step"], r["split"]) for r in logs[0]] == [(r["step"], r["split"]) for r in logs[1]]
    assert [r["step"] for r in logs[0] if r["split"] == "test"] == [25, 50]
    for key in ("loss", "accuracy", "top1", "top5"):
        np.testing.assert_allclose([r.get(key, 0) for r in logs[0]], [r.get(key, 0) for r in logs[1]],
                                   rtol=1e-6, err_msg=key)
    (model, params, card), (_, oracle, oracle_card) = (checkpoint.restore_model(d / "export") for d in (two, one))
    assert model == configs.get("mnist_cnn", **SETTINGS).build_model() and card["step"] == 50
    for (path, x), y in zip(jax.tree_util.tree_flatten_with_path(params)[0], jax.tree.leaves(oracle)):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=1e-5, atol=1e-6,
                                   err_msg=jax.tree_util.keystr(path))
    for key in ("test_loss", "test_accuracy", "test_top5"):
        np.testing.assert_allclose(card[key], oracle_card[key], rtol=1e-6, err_msg=key)
    assert card["config"] == oracle_card["config"] == checkpoint.read_card(two / "run" / "checkpoints")["config"]
    assert "--process-id 0" in card["command"] and card["machine"].endswith("2 x cpu")
    assert sorted(p.name for p in (two / "export" / "50").iterdir() if p.is_dir()) == ["params"]  # no optimizer state
    assert f"exported to {two / 'export'}" in outputs[0] and "exported" not in outputs[1]  # process 0 prints


def test_devices_of_one_process_only_are_refused_by_both(tmp_path):
    # process 1 would otherwise fail alone, and process 0 wait for it in a collective
    for rc, out in run_two_processes(tmp_path, num_devices=1):
        assert rc == 1 and "num_devices=1 would use [1, 0] devices of the 2 processes" in out, out[-3000:]


def test_two_processes_train_many_and_export_like_one_process(tmp_path):
    # --seeds: two models in one program (default strategy, unroll on CPUs), one epoch; the
    # second call finds the run done, restores both models, evaluates them again and exports
    two, one = tmp_path / "two", tmp_path / "one"
    seeds, epoch = ("--seeds", "0", "1"), dict(num_epochs=1)
    train_two_processes(two / "run", *seeds, **epoch)
    outputs = train_two_processes(two / "run", *seeds, "--export", str(two / "export"), **epoch)
    train_one_process_two_devices(one / "run", *seeds, **epoch)

    logs = [train.read_metrics(d / "run") for d in (two, one)]
    assert [(r["step"], r["split"]) for r in logs[0]] == [(r["step"], r["split"]) for r in logs[1]]
    assert [r["step"] for r in logs[0] if r["split"] == "test"] == [25]  # not twice
    for key in ("loss", "accuracy", "top1", "top5"):
        assert all(len(r[key]) == 2 for r in logs[0] if key in r), key  # one entry per model
        np.testing.assert_allclose([r.get(key, [0, 0]) for r in logs[0]], [r.get(key, [0, 0]) for r in logs[1]],
                                   rtol=1e-6, err_msg=key)
    _, oracle, oracle_card = checkpoint.restore_model(one / "run")
    assert oracle_card["num_models"] == 2 and oracle_card["seeds"] == [0, 1] and oracle_card["step"] == 25
    for where in (two / "run", two / "export"):
        model, params, card = checkpoint.restore_model(where)
        assert model == configs.get("mnist_cnn", **SETTINGS).build_model() and card["step"] == 25
        assert card["num_models"] == 2 and card["seeds"] == [0, 1]
        for (path, x), y in zip(jax.tree_util.tree_flatten_with_path(params)[0], jax.tree.leaves(oracle)):
            assert x.shape[0] == 2 and not np.allclose(x[0], x[1]), jax.tree_util.keystr(path)  # two models
            np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=1e-5, atol=1e-6,
                                       err_msg=f"{where}: {jax.tree_util.keystr(path)}")
    card = checkpoint.read_card(two / "export")
    final = logs[1][-1]
    for key, record_key in (("test_loss", "loss"), ("test_accuracy", "top1"), ("test_top5", "top5")):
        np.testing.assert_allclose(card[key], final[record_key], rtol=1e-6, err_msg=key)  # one per model
    assert sorted(p.name for p in (two / "export" / "25").iterdir() if p.is_dir()) == ["params"]
    assert f"exported to {two / 'export'}" in outputs[0] and "exported" not in outputs[1]


def test_an_export_destination_refused_by_one_process_is_refused_by_both(tmp_path):
    # a relative --export from other working directories: process 1 sees a non-empty folder,
    # process 0 an empty one; both must stop before training, neither waiting for the other
    (tmp_path / "a").mkdir()
    (tmp_path / "b" / "export").mkdir(parents=True)
    (tmp_path / "b" / "export" / "keep.txt").write_text("not ours")
    results = run_two_processes(tmp_path / "run", "--export", "export", cwds=(tmp_path / "a", tmp_path / "b"))
    (rc0, out0), (rc1, out1) = results
    assert rc0 == 1 and f"export destination {tmp_path / 'a' / 'export'} is refused on processes [1]" in out0, out0
    assert rc1 == 1 and f"export destination {tmp_path / 'b' / 'export'} is not empty; remove it first" in out1, out1
    assert not (tmp_path / "run").exists()  # refused before training
    assert (tmp_path / "b" / "export" / "keep.txt").read_text() == "not ours"
