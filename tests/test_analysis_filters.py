"""First-layer diagnostics against filters whose spectra are known in closed form."""

import jax
import numpy as np
import pytest

from jaxvis import models
from jaxvis.analysis import filters


def gratings(freqs, size=11):
    """One cosine grating per frequency (cycles/pixel, horizontal), as an HWIO kernel."""
    x = np.arange(size)
    return np.stack([np.tile(np.cos(2 * np.pi * f * x), (size, 1)) for f in freqs], -1)[:, :, None, :]


def test_spectral_peak_of_a_grating_is_its_frequency():
    freqs, energy = filters.radial_spectrum(gratings([0.0625, 0.1875, 0.375], size=32), size=64)
    peaks = freqs[np.argmax(energy, axis=1)]
    np.testing.assert_allclose(peaks, [0.0625, 0.1875, 0.375], atol=0.5 / 32 + 1e-9)  # within one bin
    np.testing.assert_allclose(energy.sum(axis=1), 1.0)


def test_coverage_counts_filters_per_band():
    cov = filters.frequency_coverage(gratings([0.06, 0.07, 0.2, 0.4], size=32))
    assert cov == {"low": 0.5, "mid": 0.25, "high": 0.25}


def test_aliasing_is_the_energy_above_nyquist():
    k = gratings([0.05, 0.3], size=32)
    # stride 2: Nyquist 0.25. The 0.05 grating has (almost) nothing above it, the 0.3 one almost all.
    a = filters.aliasing(k, stride=2)
    assert 0.45 < a < 0.55
    assert filters.aliasing(k[..., :1], stride=2) < 0.05 and filters.aliasing(k[..., 1:], stride=2) > 0.9
    assert filters.aliasing(k[..., :1], stride=8) > filters.aliasing(k[..., :1], stride=2)  # Nyquist 1/16 < 0.05


def test_aliasing_is_per_axis_and_energy_above_is_radial():
    # a 16x16 grating at (3/16, 3/16) cycles/pixel, on the FFT grid (size 16): all its energy in 4 bins
    y, x = np.mgrid[:16, :16]
    k = np.cos(2 * np.pi * 3 * (y + x) / 16)[:, :, None, None]
    # stride 2 subsamples rows and columns, Nyquist 1/4 along each: 3/16 on both axes is below it, not aliased,
    # although its radial frequency (0.265) is above 1/4
    assert filters.aliasing(k, stride=2, size=16) == pytest.approx(0.0, abs=1e-12)
    assert filters.aliasing(k, stride=3, size=16) == pytest.approx(1.0)  # Nyquist 1/6 < 3/16
    assert filters.energy_above(k, 0.25, size=16) == pytest.approx(1.0)
    assert filters.energy_above(k, 0.3, size=16) == pytest.approx(0.0, abs=1e-12)
    with pytest.raises(ValueError, match="stride must be an integer >= 1, got 0"):
        filters.aliasing(k, stride=0)


def test_dead_fraction_finds_maps_that_never_fire():
    model = models.build("mnist_cnn", widths=(8, 8), hidden=8)
    params = model.init(jax.random.key(0))
    params["conv1"]["kernel"] = params["conv1"]["kernel"].at[..., [2, 5]].set(0.0)
    params["conv1"]["bias"] = params["conv1"]["bias"].at[2].set(-1.0).at[5].set(0.0)
    images = np.random.default_rng(0).integers(0, 256, (16, 28, 28, 1), dtype=np.uint8)
    fraction, dead = filters.dead_fraction(model, params, [images], "relu1")
    assert fraction == pytest.approx(2 / 8) and dead.tolist() == [2, 5]


M = models.build("mnist_cnn", widths=(2, 2), hidden=4)
P = M.init(jax.random.key(0))
IMAGES = np.zeros((2, 28, 28, 1), np.uint8)
K = gratings([0.1, 0.3])  # (11, 11, 1, 2)

BAD_INPUTS = [
    ("dead-fraction-nan-threshold", lambda: filters.dead_fraction(M, P, [IMAGES], "relu1", threshold=np.nan),
     r"threshold must be a finite number, got float nan"),
    ("dead-fraction-text-threshold", lambda: filters.dead_fraction(M, P, [IMAGES], "relu1", threshold="0"),
     r"threshold must be a finite number, got str '0'"),
    ("dead-fraction-unknown-layer", lambda: filters.dead_fraction(M, P, [IMAGES], "relu0"),
     r"unknown layer of mnist_cnn 'relu0'.*Did you mean"),
    ("dead-fraction-dense-layer", lambda: filters.dead_fraction(M, P, [IMAGES], "fc5"),
     r"layer 'fc5' of mnist_cnn has no spatial maps"),
    ("dead-fraction-no-batches", lambda: filters.dead_fraction(M, P, [], "relu1"),
     r"top_k got an empty dataset \(no batches\)"),
    ("dead-fraction-three-channels", lambda: filters.dead_fraction(M, P, [np.zeros((2, 28, 28, 3), np.uint8)], "relu1"),
     r"pixels must have 1 channels on their last axis \(NHWC\) for mnist_cnn, got shape \(2, 28, 28, 3\)"),
    ("spectrum-kernel-rank-3", lambda: filters.radial_spectrum(K[..., 0]),
     r"kernel must be a non-empty array of numbers \(H, W, in, out\): HWIO, got float64 of shape \(11, 11, 1\)"),
    ("spectrum-kernel-nan", lambda: filters.radial_spectrum(np.where(K > 0.99, np.nan, K)),
     r"kernel must be finite, got \d+ non-finite values"),
    ("spectrum-size-zero", lambda: filters.radial_spectrum(K, size=0), r"size must be an integer >= 1, got 0"),
    ("spectrum-size-float", lambda: filters.radial_spectrum(K, size=64.0), r"size must be an integer >= 1, got 64.0"),
    ("spectrum-size-below-kernel", lambda: filters.radial_spectrum(K, size=8),
     r"size \(the FFT's\) must be at least the kernel's 11 pixels, got 8"),
    ("coverage-text-kernel", lambda: filters.frequency_coverage(np.full((3, 3, 1, 2), "a")),
     r"kernel must be a non-empty array of numbers \(H, W, in, out\): HWIO, got <U1 of shape \(3, 3, 1, 2\)"),
    ("coverage-no-filters", lambda: filters.frequency_coverage(np.zeros((3, 3, 1, 0))),
     r"kernel must be a non-empty array of numbers.*got float64 of shape \(3, 3, 1, 0\)"),
    ("aliasing-stride-zero", lambda: filters.aliasing(K, stride=0), r"stride must be an integer >= 1, got 0"),
    ("aliasing-stride-fraction", lambda: filters.aliasing(K, stride=1.5), r"stride must be an integer >= 1, got 1.5"),
    ("aliasing-kernel-rank-2", lambda: filters.aliasing(K[..., 0, 0], stride=2),
     r"kernel must be a non-empty array of numbers \(H, W, in, out\): HWIO, got float64 of shape \(11, 11\)"),
    ("energy-above-beyond-nyquist", lambda: filters.energy_above(K, 0.7),
     r"frequency \(cycles per pixel\) must be a finite number >= 0 and <= 0.5, got float 0.7"),
    ("energy-above-nan", lambda: filters.energy_above(K, np.nan),
     r"frequency \(cycles per pixel\) must be a finite number >= 0 and <= 0.5, got float nan"),
    ("energy-above-infinite-kernel", lambda: filters.energy_above(K * np.inf, 0.2),
     r"kernel must be finite, got \d+ non-finite values"),
]


@pytest.mark.parametrize("call, message", [case[1:] for case in BAD_INPUTS], ids=[case[0] for case in BAD_INPUTS])
def test_bad_input_is_a_value_error_saying_expected_and_given(call, message):
    with pytest.raises(ValueError, match=message):
        call()
