"""The slower remainder of tests/test_scripts_bad_input.py, and the counts that argparse
refuses (its own convention: the usage, then ``<script>: error: ...``, exit status 2)."""

import pytest
from test_scripts_bad_input import MORE_CASES, assert_one_error_line, run_cases

# (id, script, arguments, argparse's message)
ARGPARSE_CASES = [
    ("demo: --num-images 0", "demo", ("--num-images", "0", "--out", "{out}"),
     "demo.py: error: argument --num-images: expected an integer >= 1, got '0'"),
    ("architecture: --epochs 0", "architecture", ("--quick", "--epochs", "0", "--workdir", "{out}", "--out", "{out}"),
     "architecture.py: error: argument --epochs: expected an integer >= 1, got '0'"),
    ("deconvnet: --k 0", "deconvnet", ("--checkpoint", "{bad_card}", "--k", "0", "--out", "{out}"),
     "deconvnet.py: error: argument --k: expected an integer >= 1, got '0'"),
]


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    return run_cases(MORE_CASES + ARGPARSE_CASES, tmp_path_factory.mktemp("scripts"))


@pytest.mark.parametrize("name", [case[0] for case in MORE_CASES])
def test_bad_input_ends_a_script_with_one_error_line(results, name):
    assert_one_error_line(results[name])


@pytest.mark.parametrize("name", [case[0] for case in ARGPARSE_CASES])
def test_argparse_refuses_counts_of_zero_with_its_usage(results, name):
    status, stderr, message = results[name]
    assert status == 2 and "Traceback" not in stderr and stderr.startswith("usage: "), (status, stderr[-3000:])
    assert stderr.splitlines()[-1] == message, stderr
