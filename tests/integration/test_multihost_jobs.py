"""Top-k mining (``scripts/deconvnet.py``) and dataset-wide occlusion (``scripts/occlusion.py``)
over two local CPU processes (``jax.distributed``), against one process with two devices
on the same images; resuming after one process is killed; and the bad input every process
must refuse alike.

mnist_cnn with its shipped checkpoint on the bundled sample digits. The oracle of the
top-k sheets is one process streaming the same batches (and, in this test's process,
``topk.top_k`` over the whole set in one stream): indices, values and positions must be
equal exactly, as the parts are merged exactly. Occlusion maps must be equal: each image's
sweep is the same arithmetic in one process or two.
"""

import csv
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


def kill_process_1_when(path):
    """A ``watch`` that kills process 1 (SIGKILL) once ``path`` exists (the first of its
    share, well before it is done); ``state`` says when."""
    state = {}

    def watch(procs):
        if "killed" not in state and path.exists():
            procs[1].send_signal(signal.SIGKILL)
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
    watch, state = kill_process_1_when(first_file)
    results = two_processes(command, watch=watch)
    assert "killed" in state, f"{first_file.name} was not written\n{report(results)}"
    (rc0, out0), (rc1, _) = results
    stopped = time.monotonic() - state["killed"]
    assert rc1 == -signal.SIGKILL and rc0 == 1, out0[-3000:]
    message = f"error: process 1 did not reach {meeting!r} within {WAIT:g} s of process 0 (died, failed or stuck"
    assert message in out0, out0[-3000:]
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
