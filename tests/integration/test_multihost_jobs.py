"""Top-k mining (``scripts/deconvnet.py``) and dataset-wide occlusion (``scripts/occlusion.py``)
over two local CPU processes (``jax.distributed``), against one process with two devices
on the same images; resuming after one process is killed; a process killed or stopped
while the others compute, named by them within ``--timeout``; and the bad input every
process must refuse alike.

mnist_cnn with its shipped checkpoint on the bundled sample digits. The oracle of the
top-k sheets is one process streaming the same batches (and, in this test's process,
``topk.top_k`` over the whole set in one stream): indices, values and positions must be
equal exactly, as the parts are merged exactly. Occlusion maps must be equal: each image's
sweep is the same arithmetic in one process or two.
"""

import csv
import re
import signal
import subprocess
import sys
import time

import numpy as np
from test_multihost import ROOT, free_port, process_env, report, run_processes

from jaxvis import checkpoint, data, topk

CHECKPOINT = ROOT / "checkpoints" / "mnist_cnn"
WAIT = 20  # the jobs' --timeout: how long a process waits for the others at a meeting point
TIMEOUT = 240


def deconvnet(out, *args: str) -> list[str]:
    # 1,000 images in 20 parts of one batch of 50; two layers, four maps a sheet
    return [sys.executable, str(ROOT / "scripts" / "deconvnet.py"), "--checkpoint", str(CHECKPOINT), "--dataset",
            "mnist_sample", "--out", str(out), "--layer", "relu2", "pool2", "--k", "9", "--maps", "4", "--batch-size",
            "50", "--part-batches", "1", *args]


def occlusion(out, *args: str) -> list[str]:
    # 40 images in 4 shards of 10; a 4x4 occluder at stride 3 (9 x 9 positions)
    return [sys.executable, str(ROOT / "scripts" / "occlusion.py"), "--checkpoint", str(CHECKPOINT), "--dataset",
            "mnist_sample", "--out", str(out), "--limit", "40", "--shard-size", "10", "--patch", "4", "--stride", "3",
            "--figure", "2", *args]


def one_process_two_devices(command: list[str]) -> str:
    env = process_env(XLA_FLAGS="--xla_force_host_platform_device_count=2")
    run = subprocess.run(command, env=env, capture_output=True, text=True, timeout=TIMEOUT)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    return run.stdout


def two_processes(command: list[str], extra=((), ()), envs=None, watch=None) -> list[tuple[int, str]]:
    """``command`` as processes 0 and 1 of one job (each with its ``extra`` arguments)."""
    flags = ["--coordinator-address", f"localhost:{free_port()}", "--num-processes", "2", "--timeout", str(WAIT)]
    return run_processes([[*command, *flags, "--process-id", str(i), *more] for i, more in enumerate(extra)],
                         envs=envs, timeout=TIMEOUT, watch=watch)


def succeed(results) -> list[str]:
    assert all(rc == 0 for rc, _ in results), report(results)
    return [out for _, out in results]


def kill_when(process: int, *paths, how=signal.SIGKILL):
    """A ``watch`` that sends ``process`` the signal ``how`` once every one of ``paths``
    exists; ``state`` says when."""
    state = {}

    def watch(procs):
        if "killed" not in state and all(path.exists() for path in paths):
            procs[process].send_signal(how)
            state["killed"] = time.monotonic()
    return watch, state


def files(folder, pattern) -> dict:
    """``{name: (inode, mtime_ns)}`` of the files: a file written again changes both."""
    return {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in sorted(folder.glob(pattern))}


def resume_after_killing_process_1(command, first_file, meeting: str) -> tuple[dict, list[str]]:
    """Run ``command`` as two processes, kill process 1 once it wrote ``first_file``;
    process 0 must stop naming process 1 within ``WAIT`` seconds (and some for its exit),
    and the same command must then finish. The files kept from the killed run, and the
    outputs of the second."""
    watch, state = kill_when(1, first_file)  # the first of its share, well before it is done
    results = two_processes(command, watch=watch)
    assert "killed" in state, f"{first_file.name} was not written\n{report(results)}"
    (rc0, out0), (rc1, _) = results
    stopped = time.monotonic() - state["killed"]
    assert rc1 == -signal.SIGKILL and rc0 == 1, out0[-3000:]
    # named at the meeting point, or by process 0's watch while it still computed
    assert re.search(rf"error: process 1 (did not reach {meeting!r} within {WAIT:g} s of process 0 \(died, failed or "
                     rf"stuck|gave no sign of life for {WAIT:g} s \(died, killed)", out0), out0[-3000:]
    assert "Traceback" not in out0, out0[-3000:]
    assert stopped < WAIT + 60, f"process 0 stopped {stopped:.0f} s after process 1 was killed"
    kept = files(first_file.parent, first_file.name[:5] + "*.npz")
    outputs = succeed(two_processes(command))
    return kept, outputs


def test_top_k_over_two_processes_equals_one_process_and_resumes(tmp_path):
    one, two = tmp_path / "one", tmp_path / "two"
    one_process_two_devices(deconvnet(one))
    kept, outputs = resume_after_killing_process_1(deconvnet(two), two / "parts" / "part_00010.npz", "top-k exchange")

    after = files(two / "parts", "part_*.npz")
    assert sorted(after) == [f"part_{i:05d}.npz" for i in range(20)]
    assert {name: after[name] for name in kept} == kept  # what the killed run finished was not computed again
    # process 0 finished its parts 0-9 before it stopped, process 1 part 10 before it was killed
    assert {f"part_{i:05d}.npz" for i in range(11)} <= set(kept) and len(kept) < 20
    with np.load(one / "topk.npz") as f, np.load(two / "topk.npz") as g:
        expected, got = dict(f), dict(g)
    assert sorted(got) == sorted(expected) and len(got) == 5 * len({k.split(".")[0] for k in got})
    for key in expected:
        np.testing.assert_array_equal(got[key], expected[key], err_msg=key)

    # one stream over all 1,000 images, in this process, in the same batches
    model, params, _ = checkpoint.restore_model(CHECKPOINT)
    images = next(iter(data.open_dataset("mnist_sample", "test").batches(1000)))[0]
    layers = sorted({key.split(".")[0] for key in got})
    stream = topk.top_k(model, params, [images[i:i + 50] for i in range(0, 1000, 50)], layers, k=9,
                        one_per_image=True)
    for layer in layers:
        for field in ("value", "image", "row", "col"):
            np.testing.assert_array_equal(got[f"{layer}.{field}"], np.asarray(getattr(stream[layer], field)),
                                          err_msg=f"{layer}.{field}")
        assert (two / f"{layer}.png").stat().st_size > 0
    assert "wrote" in outputs[0] and "wrote" not in outputs[1]  # process 0 writes the sheets and the page
    assert layers == ["pool2", "relu2"] and (two / "index.html").read_text().count("<img") == 3  # and the filters


def test_occlusion_over_two_processes_equals_one_process_and_resumes(tmp_path):
    one, two = tmp_path / "one", tmp_path / "two"
    one_process_two_devices(occlusion(one))
    kept, outputs = resume_after_killing_process_1(occlusion(two), two / "shard_00002.npz", "every shard written")

    after = files(two, "shard_*.npz")
    assert sorted(after) == [f"shard_0000{i}.npz" for i in range(4)]
    assert {name: after[name] for name in kept} == kept
    assert set(kept) == {"shard_00000.npz", "shard_00001.npz", "shard_00002.npz"}  # shard 3: process 1's last
    for name in after:
        with np.load(one / name) as f, np.load(two / name) as g:
            assert sorted(f.files) == sorted(g.files), name
            for key in f.files:
                np.testing.assert_array_equal(g[key], f[key], err_msg=f"{name} {key}")
    with open(one / "summary.csv") as f, open(two / "summary.csv") as g:
        expected, got = list(csv.reader(f)), list(csv.reader(g))
    assert len(got) == 41 and got == expected
    assert (two / "fig7.png").stat().st_size > 0
    assert "wrote" in outputs[0] and "wrote" not in outputs[1]


def test_processes_that_disagree_on_settings_or_data_are_refused_by_both(tmp_path):
    results = two_processes(deconvnet(tmp_path), extra=((), ("--k", "5", "--limit", "500")))
    for rc, out in results:
        assert rc == 1 and "error: the 2 processes disagree on the settings (data: process 0 'mnist_sample test, " \
                               "1000 images" in out, out[-3000:]
        assert "500 images" in out and "k: process 0 9, process 1 5)" in out and "Traceback" not in out, out[-3000:]
    assert not (tmp_path / "parts").exists()


def test_unequal_devices_and_unshared_output_folders_are_refused_by_both(tmp_path):
    envs = [process_env(XLA_FLAGS="--xla_force_host_platform_device_count=2"), process_env()]
    for rc, out in two_processes(occlusion(tmp_path / "out"), envs=envs):
        assert rc == 1 and "error: the processes have [2, 1] devices (process 0, 1, ...)" in out, out[-3000:]
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    command = deconvnet("relative")
    flags = ["--coordinator-address", f"localhost:{free_port()}", "--num-processes", "2", "--timeout", str(WAIT)]
    results = run_processes([[*command, *flags, "--process-id", str(i)] for i in range(2)],
                            cwds=[tmp_path / "a", tmp_path / "b"], timeout=TIMEOUT)
    for rc, out in results:
        assert rc == 1 and "processes [1] do not see the output folder" in out and "Traceback" not in out, out[-3000:]


# A job that meets the others, then computes for two minutes before it meets them again
COMPUTING = """
import argparse, time
from pathlib import Path
import jax
from jaxvis import cli, distributed

def main():
    parser = argparse.ArgumentParser()
    distributed.add_arguments(parser)
    parser.add_argument("--ready")
    args = parser.parse_args()
    distributed.initialize(args)
    with distributed.fail_together():
        distributed.barrier("start")
        Path(f"{args.ready}.{jax.process_index()}").touch()
        time.sleep(120)
        distributed.barrier("end")

cli.run(main)
"""


def stop_while_computing(tmp_path, process: int, how) -> tuple[float, list[tuple[int, str]]]:
    """Run COMPUTING as two processes and send ``process`` the signal ``how`` once both
    compute; the seconds from the signal to the end of the last one, and each one's exit
    status and output."""
    watch, state = kill_when(process, tmp_path / "ready.0", tmp_path / "ready.1", how=how)
    flags = ["--coordinator-address", f"localhost:{free_port()}", "--num-processes", "2", "--timeout", str(WAIT)]
    results = run_processes([[sys.executable, "-c", COMPUTING, "--ready", str(tmp_path / "ready"), *flags,
                              "--process-id", str(i)] for i in range(2)], watch=watch, timeout=TIMEOUT)
    assert "killed" in state, report(results)
    return time.monotonic() - state["killed"], results


def test_process_0_stopped_by_sigterm_stops_the_others_at_once_naming_it(tmp_path):
    stopped, results = stop_while_computing(tmp_path, 0, signal.SIGTERM)
    (rc0, out0), (rc1, out1) = results
    assert rc0 == 1 and "error: process 0 was stopped by SIGTERM" in out0, report(results)
    assert rc1 == 1 and "error: process 0 failed (InterruptedError: process 0 was stopped by SIGTERM); process 1 " \
                        "stops too. Finished parts are kept: run the same command again to resume" in out1, \
        report(results)
    assert all("Traceback" not in out and "Terminating process" not in out for _, out in results), report(results)
    assert stopped < 10, f"the processes ended {stopped:.0f} s after process 0 was stopped"  # not at 120 s


def test_a_process_killed_while_the_others_compute_is_named_within_the_timeout(tmp_path):
    stopped, results = stop_while_computing(tmp_path, 1, signal.SIGKILL)
    (rc0, out0), (rc1, _) = results
    assert rc1 == -signal.SIGKILL and rc0 == 1, report(results)
    assert f"error: process 1 gave no sign of life for {WAIT:g} s (died, killed, or its machine is lost); process 0 " \
           "stops too. Finished parts are kept: run the same command again to resume" in out0, report(results)
    # ours, long before JAX's heartbeat check (WAIT + 60 s) and process 0's next meeting point (120 s)
    assert "Traceback" not in out0 and "Terminating process" not in out0, report(results)
    assert WAIT - 1 < stopped < WAIT + 10, f"process 0 stopped {stopped:.0f} s after process 1 was killed"
