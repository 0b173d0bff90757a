"""The pieces of multi-process jobs that one process can check: share assignment, flags,
settings comparison, fingerprints, and the one-process forms of the exchanges (the
multi-process runs are in tests/integration/test_multihost_jobs.py)."""

import argparse

import jax
import numpy as np
import pytest

from jaxvis import distributed


@pytest.mark.parametrize("processes", [1, 2, 3, 5, 8])
def test_share_is_contiguous_blocks_covering_every_item_once(processes):
    for count in range(0, 23):
        blocks = [distributed.share(count, p, processes) for p in range(processes)]
        # oracle: numpy's split into near-equal consecutive pieces
        expected = [list(piece) for piece in np.array_split(np.arange(count), processes)]
        assert sorted(len(b) for b in blocks) == sorted(len(e) for e in expected), (count, processes)
        assert [i for b in blocks for i in b] == list(range(count)), (count, processes)  # in order, once each
        assert max(map(len, blocks)) - min(map(len, blocks)) <= 1, (count, processes)


def test_share_of_this_process_is_everything_with_one_process():
    assert distributed.share(7) == range(7)


def parse(*argv):
    parser = argparse.ArgumentParser()
    distributed.add_arguments(parser)
    return parser.parse_args(list(argv))


def test_no_coordinator_is_one_process_and_starts_nothing():
    distributed.initialize(parse())
    distributed.initialize(parse("--num-processes", "1", "--process-id", "0"))
    assert jax.process_count() == 1 and not jax.distributed.is_initialized()


BAD_FLAGS = [
    (("--num-processes", "2"), r"--num-processes 2 and --process-id None need --coordinator-address host:port"),
    (("--process-id", "1"), r"--num-processes None and --process-id 1 need --coordinator-address"),
    (("--coordinator-address", "localhost:1234", "--num-processes", "2"),
     r"--coordinator-address needs --num-processes and --process-id, got --num-processes 2 and --process-id None"),
    (("--coordinator-address", "localhost:1234", "--num-processes", "2", "--process-id", "2"),
     r"expected --num-processes >= 1 and 0 <= --process-id < --num-processes, got --num-processes 2 and "
     r"--process-id 2"),
    (("--coordinator-address", "localhost:1234", "--num-processes", "0", "--process-id", "0"),
     r"expected --num-processes >= 1 .*got --num-processes 0 and --process-id 0"),
    (("--coordinator-address", "localhost", "--num-processes", "2", "--process-id", "0"),
     r"--coordinator-address must be host:port, got 'localhost'"),
    (("--coordinator-address", "localhost:1234", "--num-processes", "2", "--process-id", "0", "--timeout", "0"),
     r"--timeout must be a finite number > 0, got float 0.0"),
    (("--timeout", "nan"), r"--timeout must be a finite number > 0, got float nan"),
]


@pytest.mark.parametrize("argv, message", BAD_FLAGS, ids=[" ".join(a) for a, _ in BAD_FLAGS])
def test_bad_flags_are_value_errors_before_anything_starts(argv, message):
    with pytest.raises(ValueError, match=message):
        distributed.initialize(parse(*argv))
    assert not jax.distributed.is_initialized()


def test_disagreement_names_each_setting_and_process():
    same = {"k": 9, "data": "mnist test"}
    assert distributed.disagreement([same, dict(same), dict(same)]) == ""
    message = distributed.disagreement([same, {"k": 5, "data": "mnist test"}, {"data": "mnist train", "k": 9}])
    assert message.startswith("the 3 processes disagree on the settings (data: process 0 'mnist test', process 1 "
                              "'mnist test', process 2 'mnist train'; k: process 0 9, process 1 5, process 2 9); ")
    assert "<missing>" in distributed.disagreement([same, {"k": 9}])


def test_agree_and_meetings_with_one_process_pass_through():
    distributed.agree({"k": 9})
    distributed.barrier("nothing to wait for")
    assert distributed.gather_json({"a": [1, 2]}, "one") == [{"a": [1, 2]}]
    with pytest.raises(ValueError, match="settings must be a dict, got list"):
        distributed.agree([("k", 9)])


def test_allgather_with_one_process_adds_the_process_axis_and_counts_bytes():
    before = distributed.gathered_bytes()
    tree = {"value": np.arange(6, dtype=np.float32).reshape(2, 3), "span": np.asarray([4, 5], np.int32)}
    got = distributed.allgather(tree, "one process")
    np.testing.assert_array_equal(got["value"], tree["value"][None])
    np.testing.assert_array_equal(got["span"], tree["span"][None])
    assert distributed.gathered_bytes() - before == 6 * 4 + 2 * 4


def test_fingerprint_changes_with_any_bit_shape_or_dtype():
    x = np.random.default_rng(0).random((3, 4)).astype(np.float32)
    base = distributed.fingerprint({"w": x})
    assert base == distributed.fingerprint({"w": x.copy()}) == distributed.fingerprint({"w": jax.numpy.asarray(x)})
    flipped = x.copy()
    flipped.view(np.uint32)[1, 2] ^= 1  # one bit of one value
    others = [distributed.fingerprint({"w": y}) for y in (flipped, x.reshape(4, 3), x.astype(np.float64))]
    assert len({base, *others}) == 4


def test_local_gives_this_process_copy_on_one_device():
    tree = {"a": jax.numpy.ones((2, 2)), "b": np.zeros(3), "name": "x"}
    got = distributed.local(tree)
    assert got["a"].devices() == {jax.local_devices()[0]} and got["name"] == "x" and got["b"] is tree["b"]
    np.testing.assert_array_equal(got["a"], np.ones((2, 2)))


def test_same_folder_with_one_process_creates_it_and_refuses_a_file(tmp_path):
    assert distributed.same_folder(tmp_path / "a" / "b") == (tmp_path / "a" / "b").absolute()
    assert (tmp_path / "a" / "b").is_dir()
    (tmp_path / "file").write_text("x")
    with pytest.raises(ValueError, match=r"the output folder must be a folder, but .*file is a file"):
        distributed.same_folder(tmp_path / "file" / "c")


def test_check_devices_passes_with_one_process():
    distributed.check_devices()


def test_run_job_with_one_process_runs_it_on_the_checked_folder_and_lets_errors_through(tmp_path):
    seen = []
    distributed.run_job(lambda args, out: seen.append((args.timeout, out)), parse(), tmp_path / "out")
    assert seen == [(distributed.DEFAULT_TIMEOUT, (tmp_path / "out").absolute())] and (tmp_path / "out").is_dir()

    def fail(args, out):
        raise ValueError("bad input")

    with pytest.raises(ValueError, match="bad input"):
        distributed.run_job(fail, parse(), tmp_path / "out")
