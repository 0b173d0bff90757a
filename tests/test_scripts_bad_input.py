"""The command lines given bad input: exit status 1, one line on stderr that starts with
``error:``, and no traceback (nor anything printed after the line).

Every script of ``scripts/`` that takes ``--checkpoint``, ``--out``, ``--workdir`` or
``--data-dir`` has a case here, each chosen to fail before heavy work: a file where a folder
goes, a missing checkpoint, a damaged ``card.json`` or checkpoint, ``--data-dir`` a file,
counts of 0 and unknown names. The scripts run as real processes (a JAX import each), two
at a time: ``CASES`` here, the slower ``MORE_CASES`` (and the counts that argparse refuses)
in ``tests/integration/test_scripts_bad_input_more.py``.
"""

import os
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from test_checkpoint import damage

ROOT = Path(__file__).resolve().parent.parent
CHECKPOINT = ROOT / "checkpoints" / "mnist_cnn"
SAMPLE = ("--set", "dataset='mnist_sample'", "--set", "train_split='test'")  # train.py on the bundled sample

# (id, script, arguments, what the error line says); in arguments and messages {file} is a
# plain file, {missing} a path that does not exist, {bad_card} a copy of the shipped MNIST
# checkpoint whose card.json is not text, {damaged} one whose arrays are garbage,
# {bad_workdir} a training workdir whose card.json is not text, {out} a fresh folder
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
    return {name: str(tmp / name) for name in ("file", "missing", "bad_card", "damaged", "bad_workdir")}


def run_cases(cases, tmp: Path) -> dict[str, tuple[int, str, str]]:
    """Run each case's script in ``ROOT`` (its default paths are the repository's), two at a
    time; ``{id: (exit status, stderr, expected message)}`` with the placeholders filled in."""
    paths = make_inputs(tmp)
    env = {k: v for k, v in os.environ.items() if k not in ("JAXVIS_TRACEBACK", "JAXVIS_DATA_DIR")}
    env.update(PYTHONPATH=str(ROOT), JAX_PLATFORMS="cpu")

    def run(index_case):
        index, (name, script, arguments, message) = index_case
        fill = {**paths, "out": str(tmp / f"out{index}")}
        command = [sys.executable, str(ROOT / "scripts" / f"{script}.py"), *(a.format(**fill) for a in arguments)]
        done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
        return name, (done.returncode, done.stderr, message.format(**fill))

    with ThreadPoolExecutor(2) as pool:
        return dict(pool.map(run, enumerate(cases)))


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


def test_every_script_with_paths_has_a_case():
    takes_paths = {p.stem for p in (ROOT / "scripts").glob("*.py")
                   if any(flag in p.read_text() for flag in ("--checkpoint", "--out", "--workdir", "--data-dir",
                                                             "cli.parser("))}
    covered = {case[1] for case in CASES + MORE_CASES}
    assert takes_paths - covered == set()
