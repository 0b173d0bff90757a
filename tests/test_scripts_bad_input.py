"""The command lines given bad input: exit status 1, one line on stderr that starts with
``error:``, and no traceback (nor anything printed after the line).

Every script of ``scripts/`` that takes ``--checkpoint``, ``--out``, ``--workdir`` or
``--data-dir`` has a case here, each chosen to fail before heavy work: a file where a folder
goes, a missing checkpoint, a damaged ``card.json`` or checkpoint, ``--data-dir`` a file,
counts of 0 and unknown names. The scripts run as real processes (a JAX import each), two
at a time: ``CASES`` here, the slower ``MORE_CASES`` (and the counts that argparse refuses)
in ``tests/integration/test_scripts_bad_input_more.py``.

Importing JAX, Flax and orbax is most of a failing script's time, so one runner process
imports them once and runs each script in a forked child, as the interpreter would run
``python script.py ...``; one case also runs in a fresh interpreter and must end the same.
"""

import atexit
import importlib
import json
import os
import runpy
import shutil
import subprocess
import sys
import traceback
from pathlib import Path

import pytest
from test_checkpoint import damage

ROOT = Path(__file__).resolve().parent.parent
CHECKPOINT = ROOT / "checkpoints" / "mnist_cnn"
SAMPLE = ("--set", "dataset='mnist_sample'", "--set", "train_split='test'")  # train.py on the bundled sample

# (id, script, arguments, what the error line says); in arguments and messages {file} is a
# plain file, {missing} a path that does not exist, {bad_card} a copy of the shipped MNIST
# checkpoint whose card.json is not text, {damaged} one whose arrays are garbage,
# {bad_workdir} a training workdir whose card.json is not text, {empty} an empty folder,
# {old_study} a dilation study's workdir with other settings, {no_rows} an occlusion run whose
# summary.csv has a header only, {out} a fresh folder
CASES = [
    ("train: --workdir a file", "train", ("--config", "mnist_cnn", "--workdir", "{file}"),
     "workdir must be a folder, but {file} is a file"),
    ("train: --data-dir a file", "train", ("--config", "mnist_cnn", "--workdir", "{out}", "--data-dir", "{file}"),
     "data_dir must be a folder, but {file} is a file"),
    ("train: --export a file", "train", ("--config", "mnist_cnn", "--workdir", "{out}", "--export", "{file}"),
     "export destination must be a folder, but {file} is a file"),
    ("train: damaged card.json", "train", ("--config", "mnist_cnn", "--workdir", "{bad_workdir}", *SAMPLE),
     "{bad_workdir}/checkpoints/card.json is not a valid JSON file (UnicodeDecodeError"),
    ("train: batch_size 0", "train", ("--config", "mnist_cnn", "--workdir", "{out}", "--set", "batch_size=0"),
     "batch_size must be an integer >= 1, got 0"),
    ("demo: missing checkpoint", "demo", ("--checkpoint", "{missing}", "--out", "{out}"),
     "checkpoint {missing} does not exist: expected a folder with card.json, or a training workdir"),
    ("demo: damaged checkpoint", "demo", ("--checkpoint", "{damaged}", "--out", "{out}"),
     "checkpoint {damaged}/2808 is damaged and cannot be read"),
    ("demo: --out a file", "demo", ("--out", "{file}"), "--out must be a folder, but {file} is a file"),
    ("deconvnet: damaged card.json", "deconvnet", ("--checkpoint", "{bad_card}", "--out", "{out}"),
     "{bad_card}/card.json is not a valid JSON file (UnicodeDecodeError"),
    ("saliency: unknown dataset", "saliency", ("--checkpoint", str(CHECKPOINT), "--dataset", "minst", "--out", "{out}"),
     "unknown dataset 'minst'"),
    ("invert: unknown layer", "invert", ("--checkpoint", str(CHECKPOINT), "--layers", "relu9", "--out", "{out}"),
     "unknown layer of mnist_cnn 'relu9'"),
    ("correspondence: --images 0", "correspondence", ("--images", "0", "--out", "{out}"),
     "--images must be at least 2 (Delta compares pairs), got 0"),
    ("evolution: --checkpoint a file", "evolution", ("--checkpoint", "{file}", "--out", "{out}"),
     "checkpoint must be a folder, but {file} is a file"),
    ("occlusion_summary: missing run", "occlusion_summary", ("{missing}",), "no summary.csv at {missing}"),
    ("ablate: unknown variant", "ablate", ("--variants", "nope", "--workdir", "{out}"), "unknown variants ['nope']"),
    ("improve: --out a file", "improve", ("--workdir", "{out}", "--out", "{file}"),
     "--out must be a folder, but {file} is a file"),
    ("make_sample: --data-dir a file", "make_sample", ("--data-dir", "{file}", "--out", "{out}/sample.npz"),
     "data_dir must be a folder, but {file} is a file"),
    ("correspondence: too few digits", "correspondence", ("--pool", "3", "--images", "4", "--out", "{out}"),
     "class 7 has 3 digits in mnist_sample/test; --images is 4"),
    ("dilation_study: repeated factors", "dilation_study", ("--quick", "--dilations", "1", "1", "--workdir", "{out}"),
     "give at least two distinct dilation factors, got [1, 1]"),
    ("dilation_study: other settings", "dilation_study", ("--quick", "--no-progress", "--workdir", "{old_study}"),
     "{old_study} holds a study with other settings"),
    ("evolution: no saved steps", "evolution", ("--checkpoint", "{empty}", "--out", "{out}"),
     "{empty} has no saved checkpoints: expected a training workdir"),
    ("evolution: --maps beyond a layer's", "evolution", ("--checkpoint", str(CHECKPOINT), "--layers", "relu1",
                                                        "--maps", "1000", "--out", "{out}"),
     "--maps 1000 is more than relu1's"),
    ("invariance: --indices out of range", "invariance", ("--indices", "5", "1000", "--out", "{out}"),
     "--indices must lie in [0, 1000), got [5, 1000]"),
    ("occlusion_summary: no rows", "occlusion_summary", ("{no_rows}",), "{no_rows}/summary.csv has no rows"),
]
MORE_CASES = [
    ("train: unknown config", "train", ("--config", "minst", "--workdir", "{out}"),
     "unknown config 'minst'; expected one of"),
    ("train: unknown setting", "train", ("--config", "mnist_cnn", "--workdir", "{out}", "--set", "lr=0.1"),
     "unknown config setting 'lr'"),
    ("train: repeated seeds", "train", ("--config", "mnist_cnn", "--workdir", "{out}", "--seeds", "1", "1", *SAMPLE),
     "seeds must be distinct integers >= 0, at least one (one model per seed), got (1, 1)"),
    ("train: divergence", "train", ("--config", "mnist_cnn", "--workdir", "{out}", "--no-progress", *SAMPLE,
                                    "--set", "optimizer='sgd'", "--set", "learning_rate=1e12", "--set",
                                    "log_every_steps=1", "--set", "max_steps=5", "--set", "model_overrides="
                                    "{{'widths': (4, 8), 'hidden': 16}}"),
     "training diverged at step"),
    ("demo: damaged card.json", "demo", ("--checkpoint", "{bad_card}", "--out", "{out}"),
     "{bad_card}/card.json is not a valid JSON file (UnicodeDecodeError"),
    ("deconvnet: unknown layer", "deconvnet", ("--checkpoint", str(CHECKPOINT), "--layer", "relu9", "--out", "{out}"),
     "unknown layer of mnist_cnn 'relu9'"),
    ("deconvnet: --data-dir a file", "deconvnet", ("--checkpoint", str(CHECKPOINT), "--dataset", "mnist",
                                                   "--data-dir", "{file}", "--out", "{out}"),
     "data_dir must be a folder, but {file} is a file"),
    ("saliency: --out under a file", "saliency", ("--checkpoint", str(CHECKPOINT), "--out", "{file}/sub"),
     "--out must be a folder, but {file} is a file"),
    ("occlusion: --data-dir a file", "occlusion", ("--data-dir", "{file}", "--out", "{out}"),
     "data_dir must be a folder, but {file} is a file"),
    ("occlusion: --out a file", "occlusion", ("--out", "{file}"), "--out must be a folder, but {file} is a file"),
    ("invariance: damaged checkpoint", "invariance", ("--checkpoint", "{damaged}", "--out", "{out}"),
     "checkpoint {damaged}/2808 is damaged and cannot be read"),
    ("invariance: unknown layer", "invariance", ("--layers", "relu9", "--out", "{out}"),
     "unknown layer of mnist_cnn 'relu9'"),
    ("invert: damaged card.json", "invert", ("--checkpoint", "{bad_card}", "--out", "{out}"),
     "{bad_card}/card.json is not a valid JSON file (UnicodeDecodeError"),
    ("class_model: missing checkpoint", "class_model", ("--checkpoint", "{missing}", "--out", "{out}"),
     "checkpoint {missing} does not exist"),
    ("class_model: unknown preset", "class_model", ("--checkpoint", str(CHECKPOINT), "--presets", "nope",
                                                    "--out", "{out}"), "unknown preset 'nope'"),
    ("correspondence: unknown layer", "correspondence", ("--layers", "relu9", "--out", "{out}"),
     "unknown layer of mnist_cnn 'relu9'"),
    ("evolution: damaged card.json", "evolution", ("--checkpoint", "{bad_workdir}", "--out", "{out}"),
     "{bad_workdir}/checkpoints/card.json is not a valid JSON file (UnicodeDecodeError"),
    ("occlusion_summary: run a file", "occlusion_summary", ("{file}",), "the run must be a folder, but {file} is a file"),
    ("dilation_study: --seeds 0", "dilation_study", ("--quick", "--seeds", "0", "--workdir", "{out}"),
     "the statistics need at least two seeds"),
    ("dilation_study: --workdir a file", "dilation_study", ("--quick", "--no-progress", "--workdir", "{file}"),
     "--workdir must be a folder, but {file} is a file"),
    ("dilation_study: --data-dir a file", "dilation_study", ("--no-progress", "--data-dir", "{file}",
                                                              "--workdir", "{out}"),
     "data_dir must be a folder, but {file} is a file"),
    ("architecture: --out a file", "architecture", ("--quick", "--workdir", "{out}", "--out", "{file}"),
     "--out must be a folder, but {file} is a file"),
    ("ablate: --data-dir a file", "ablate", ("--no-progress", "--data-dir", "{file}", "--workdir", "{out}"),
     "data_dir must be a folder, but {file} is a file"),
    ("explain: missing checkpoint", "explain", ("--checkpoint", "{missing}", "--image", "{file}", "--out", "{out}"),
     "checkpoint {missing} does not exist"),
]


def make_inputs(tmp: Path) -> dict[str, str]:
    """The bad inputs the cases name, made in ``tmp``."""
    (tmp / "file").write_text("not a folder")
    shutil.copytree(CHECKPOINT, tmp / "bad_card")
    (tmp / "bad_card" / "card.json").write_bytes(b"\xff\xfe\x00garbage")
    shutil.copytree(CHECKPOINT, tmp / "damaged")
    damage(tmp / "damaged" / "2808", "data")
    shutil.copytree(tmp / "bad_card", tmp / "bad_workdir" / "checkpoints")
    (tmp / "empty").mkdir()
    (tmp / "old_study").mkdir()
    (tmp / "old_study" / "settings.json").write_text('{"seeds": 9}')
    (tmp / "no_rows").mkdir()
    (tmp / "no_rows" / "summary.csv").write_text("index,label,predicted,base_prob,min_prob,drop,row,col\n")
    return {name: str(tmp / name) for name in ("file", "missing", "bad_card", "damaged", "bad_workdir", "empty",
                                               "old_study", "no_rows")}


# What every script imports, imported once by the runner (none starts JAX's runtime).
SHARED_MODULES = ("jaxvis.cli", "jaxvis.plots", "jaxvis.train", "jaxvis.report", "jaxvis.analysis.dilation",
                  "jaxvis.analysis.ablation", "jaxvis.analysis.evolution", "jaxvis.analysis.invariance",
                  "jaxvis.analysis.correspondence", "jaxvis.synthesis", "jaxvis.occlusion", "jaxvis.topk",
                  "matplotlib.pyplot", "scipy.stats", "tqdm")


def _exit_status(error: SystemExit) -> int:
    """The interpreter's exit status for an uncaught ``SystemExit``, printing a message
    code to stderr as it does."""
    if error.code is None:
        return 0
    if isinstance(error.code, int):
        return error.code
    print(error.code, file=sys.stderr)
    return 1


def _run_script(script: str, arguments: list[str], log: str) -> None:
    """In a forked child: ``python script arguments`` with stderr into ``log``, then exit."""
    os.dup2(os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC), 2)
    os.dup2(os.open(os.devnull, os.O_WRONLY), 1)
    sys.argv, sys.path[0] = [script, *arguments], str(Path(script).parent)
    try:
        runpy.run_path(script, run_name="__main__")
        status = 0
    except SystemExit as error:
        status = _exit_status(error)
    except BaseException:
        traceback.print_exc()
        status = 1
    atexit._run_exitfuncs()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)


def serve() -> None:
    """The runner: ``[[script, arguments, stderr file], ...]`` as JSON on stdin; each script
    runs in a forked child, two at a time; their exit statuses go to stdout as JSON."""
    jobs = json.load(sys.stdin)
    for module in SHARED_MODULES:
        importlib.import_module(module)
    from jax._src import xla_bridge
    assert not xla_bridge.backends_are_initialized(), "a fork would copy JAX's running threads"
    statuses, running = [None] * len(jobs), {}

    def reap() -> None:
        pid, wait_status = os.wait()
        statuses[running.pop(pid)] = os.waitstatus_to_exitcode(wait_status)

    for index, job in enumerate(jobs):
        if len(running) == 2:
            reap()
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:
            _run_script(*job)
        running[pid] = index
    while running:
        reap()
    print(json.dumps(statuses))


def _environment() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("JAXVIS_TRACEBACK", "JAXVIS_DATA_DIR")}
    env.update(PYTHONPATH=os.pathsep.join((str(ROOT), str(ROOT / "tests"))), JAX_PLATFORMS="cpu")
    return env


def _command(case, index: int, paths: dict[str, str], tmp: Path) -> tuple[str, list[str], str]:
    """A case's script, arguments and expected message, the placeholders filled in."""
    _, script, arguments, message = case
    fill = {**paths, "out": str(tmp / f"out{index}")}
    return str(ROOT / "scripts" / f"{script}.py"), [a.format(**fill) for a in arguments], message.format(**fill)


def run_cases(cases, tmp: Path) -> dict[str, tuple[int, str, str]]:
    """Run each case's script in ``ROOT`` (its default paths are the repository's) through
    the runner; ``{id: (exit status, stderr, expected message)}``."""
    paths = make_inputs(tmp)
    commands = [_command(case, index, paths, tmp) for index, case in enumerate(cases)]
    logs = [str(tmp / f"stderr{index}.txt") for index in range(len(cases))]
    runner = subprocess.run([sys.executable, "-c", "import test_scripts_bad_input as t; t.serve()"], cwd=ROOT,
                            env=_environment(), input=json.dumps([[script, arguments, log] for (script, arguments, _),
                                                                  log in zip(commands, logs)]),
                            capture_output=True, text=True, timeout=900)
    assert runner.returncode == 0, runner.stderr[-3000:]
    statuses = json.loads(runner.stdout.splitlines()[-1])
    return {case[0]: (status, Path(log).read_text(), message)
            for case, status, log, (_, _, message) in zip(cases, statuses, logs, commands)}


def run_fresh(case, tmp: Path) -> tuple[int, str, str]:
    """One case in a fresh interpreter: ``(exit status, stderr, expected message)``."""
    script, arguments, message = _command(case, 0, make_inputs(tmp), tmp)
    done = subprocess.run([sys.executable, script, *arguments], cwd=ROOT, env=_environment(), capture_output=True,
                          text=True, timeout=300)
    return done.returncode, done.stderr, message


def assert_one_error_line(result) -> None:
    status, stderr, message = result
    assert "Traceback" not in stderr, stderr[-3000:]
    assert status == 1 and stderr.count("\n") == 1 and stderr.startswith("error: "), (status, stderr[-3000:])
    assert message in stderr, (message, stderr)


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    return run_cases(CASES, tmp_path_factory.mktemp("scripts"))


@pytest.mark.parametrize("name", [case[0] for case in CASES])
def test_bad_input_ends_a_script_with_one_error_line(results, name):
    assert_one_error_line(results[name])


def test_a_fresh_interpreter_ends_as_the_forked_run(results, tmp_path):
    case = next(c for c in CASES if c[0] == "occlusion_summary: missing run")
    status, stderr, message = run_fresh(case, tmp_path)
    forked_status, forked_stderr, forked_message = results[case[0]]
    assert (status, stderr.replace(message, "MESSAGE")) == (forked_status, forked_stderr.replace(forked_message,
                                                                                                 "MESSAGE"))
    assert_one_error_line((status, stderr, message))


def test_every_script_with_paths_has_a_case():
    takes_paths = {p.stem for p in (ROOT / "scripts").glob("*.py")
                   if any(flag in p.read_text() for flag in ("--checkpoint", "--out", "--workdir", "--data-dir",
                                                             "cli.parser("))}
    covered = {case[1] for case in CASES + MORE_CASES}
    assert takes_paths - covered == set()
