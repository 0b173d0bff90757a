"""The memory budget bounds a sweep's peak memory, for every method.

Each sweep runs in a fresh process (``scripts/bench_memory.py``): mnist_cnn with random
weights, one image, a 4x4 occluder at stride 1 (625 positions). The baseline is the
resident set after the model, its weights and the image are made and one forward pass
has run, and after a first sweep at the same shapes has compiled the sweep's calls:
compilation is not part of the budget (XLA's compiler takes its memory once per shape,
whatever the budget; the bench reports a first run's growth, compilation included). The
measured growth is the peak resident set (``VmHWM``, reset before the sweep) less that
baseline, with large allocations mapped afresh so that no buffer hides in freed heap.
"""

import importlib.util
import re
import sys
from pathlib import Path

import jax
import numpy as np
import pytest

from jaxvis import models, occlusion
from test_occlusion import he_params

ROOT = Path(__file__).resolve().parent.parent
BUDGETS = (1.2e7, 6e7)  # both force chunking of the 625 positions; the larger fewer calls


def _bench():
    spec = importlib.util.spec_from_file_location("bench_memory", ROOT / "scripts" / "bench_memory.py")
    module = sys.modules[spec.name] = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def measured():
    bench = _bench()
    rows = bench.measure("mnist_cnn", None, 4, 1, list(bench.METHODS), BUDGETS)
    return {(row["method"], row["budget"]): row for row in rows}


@pytest.mark.parametrize("method", ["full", "incremental", "tau 0.5", "drill-down"])
def test_peak_memory_stays_within_the_budget(measured, method):
    small, large = (measured[method, budget] for budget in BUDGETS)
    for row in (small, large):
        assert "refused" not in row, row
        assert row["second_growth"] <= row["budget"], (
            f"{method} at budget {row['budget']:.3g}: peak grew {row['second_growth'] / 1e6:.1f} MB "
            f"({row['second_growth'] / row['budget']:.2f}x the budget)")
    # the budgets chunk differently: the smaller one needs more calls for the same grid
    assert small["calls"] > large["calls"] >= 1 and small["ran"] == large["ran"], (small, large)


def test_the_minimum_a_refusal_names_is_accepted():
    model = models.build("mnist_cnn")
    params = he_params(model)
    x = np.asarray(jax.random.normal(jax.random.key(1), (1, *model.input_shape)))
    with pytest.raises(ValueError, match="too small for one occluder position") as refused:
        occlusion.sweep(model, params, x, np.array([3]), 4, 2, method="incremental", memory_budget=1e6)
    least = float(re.search(r"use at least ([0-9.e+]+) ", str(refused.value)).group(1))
    assert 1e6 < least < 2e7
    calls = []
    maps = occlusion.sweep(model, params, x, np.array([3]), 4, 2, method="incremental", memory_budget=least,
                           progress=calls.append)
    assert maps.computed_NPQ.all() and sum(calls) == 13 * 13 and len(calls) > 1
