"""jaxvis.cli: what the scripts share."""

import numpy as np
import pytest

from jaxvis import cli


def test_first_per_class_equals_a_scan_in_file_order():
    labels = np.random.default_rng(0).integers(0, 4, size=200)
    expected = []
    for c in range(4):
        seen = 0
        for i, label in enumerate(labels):
            if label == c and seen < 3:
                expected.append(i)
                seen += 1
    np.testing.assert_array_equal(cli.first_per_class(labels, 3, 4), expected)
    with pytest.raises(ValueError, match=r"wanted 1 example\(s\) of each class, but classes \[4, 5\] have fewer"):
        cli.first_per_class(labels, 1, 6)
    with pytest.raises(ValueError, match=r"at least 1 example .* got count=0, num_classes=4 and"):
        cli.first_per_class(labels, 0, 4)


def test_parser_requires_a_network_and_opens_the_bundled_sample(tmp_path):
    parser = cli.parser(None, out=str(tmp_path / "out"))
    with pytest.raises(SystemExit):
        parser.parse_args([])
    args = parser.parse_args(["--checkpoint", "somewhere"])
    images, labels = cli.open_examples(args)
    assert images.shape == (1000, 28, 28, 1) and labels.shape == (1000,)
    assert cli.output_dir(args).is_dir()
    with pytest.raises(SystemExit):  # --checkpoint or --weights is required
        cli.parser(None, out="x", weights=True).parse_args([])
    args = cli.parser(None, out="x", weights=True).parse_args(["--weights", "w.npz"])
    with pytest.raises(SystemExit, match="give --weights FILE with --model NAME"):
        cli.open_network(args)


def test_set_parses_python_literals_and_falls_back_to_strings():
    assert cli.setting("num_epochs=3") == ("num_epochs", 3)
    assert cli.setting("widths=(16, 32)") == ("widths", (16, 32))
    assert cli.setting("optimizer=adam") == ("optimizer", "adam")
    assert cli.setting("augment=false") == ("augment", False) and cli.setting("augment=True") == ("augment", True)
    assert cli.setting("filter_radius=none") == ("filter_radius", None)
    import argparse
    with pytest.raises(argparse.ArgumentTypeError, match="--set takes key=value, got 'epochs'"):
        cli.setting("epochs")


def test_run_turns_bad_input_into_a_one_line_error(monkeypatch):
    def bad():
        raise ValueError("patch (29, 29) is larger than the image (28, 28)")

    monkeypatch.delenv("JAXVIS_TRACEBACK", raising=False)
    with pytest.raises(SystemExit, match=r"^error: patch \(29, 29\) is larger than the image \(28, 28\)$"):
        cli.run(bad)
    monkeypatch.setenv("JAXVIS_TRACEBACK", "1")
    with pytest.raises(ValueError, match="larger than the image"):
        cli.run(bad)
    with pytest.raises(ZeroDivisionError):  # not bad input: a bug keeps its traceback
        cli.run(lambda: 1 / 0)


def test_counts_must_be_integers_of_at_least_one():
    import argparse

    assert cli.count("3") == 3
    for text in ("0", "-2", "1.5", "x"):
        with pytest.raises(argparse.ArgumentTypeError, match=f"expected an integer >= 1, got '{text}'"):
            cli.count(text)


def test_run_ends_a_scripts_own_exit_message_with_the_same_error_line():
    def refuse():
        raise SystemExit("unknown variants ['x']")

    def usage():  # argparse prints its message, then exits with status 2
        raise SystemExit(2)

    with pytest.raises(SystemExit, match=r"^error: unknown variants \['x'\]$"):
        cli.run(refuse)
    with pytest.raises(SystemExit) as info:
        cli.run(usage)
    assert info.value.code == 2


def test_folder_refuses_a_file_on_the_path_and_creates_the_rest(tmp_path):
    (tmp_path / "file").write_text("x")
    for path in (tmp_path / "file", tmp_path / "file" / "sub"):
        with pytest.raises(ValueError, match=f"^--out must be a folder, but {tmp_path / 'file'} is a file$"):
            cli.folder(path, "--out")
    with pytest.raises(ValueError, match=r"^--out must be a path \(str or os.PathLike\), got int 3$"):
        cli.folder(3, "--out")
    assert cli.folder(tmp_path / "a" / "b", "--out").is_dir()
