"""Shared test setup: loud broadcasting, float32 everywhere, a few small helpers."""

import jax
import numpy as np
import pytest

jax.config.update("jax_numpy_rank_promotion", "raise")


def rel_err(a, b) -> float:
    """Max absolute difference relative to the oracle's max magnitude."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-30))


@pytest.fixture
def rng():
    return np.random.default_rng(0)
