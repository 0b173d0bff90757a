"""First-layer diagnostics (Zeiler & Fergus Sec. 4.1, Fig. 6).

The paper diagnoses AlexNet's first layer by eye: a mix of extremely high and low
frequency filters with little in between, dead filters, and aliasing in layer 2 from
the stride-4 first layer. These functions turn that into numbers:

- :func:`dead_fraction`: maps whose activation never exceeds a threshold anywhere in a
  dataset (the maximum comes from :func:`jaxvis.topk.top_k` with ``k=1``);
- :func:`radial_spectrum`: each filter's spectral energy by radial frequency (cycles
  per pixel, 0 to 0.5), from a zero-padded 2-D FFT summed over input channels;
- :func:`frequency_coverage`: the share of filters whose peak frequency falls in the
  low (< 1/8), mid (1/8 to 1/4) and high (>= 1/4 cycles/pixel) bands;
- :func:`aliasing`: the share of filter energy beyond the Nyquist frequency of the
  layer's stride, ``1 / (2 * stride)``, along either axis: what the subsampling (of
  rows and of columns) folds onto lower frequencies;
- :func:`energy_above`: the share of energy above a radial frequency (how much fine
  detail a pattern holds, whatever its direction).
"""

from __future__ import annotations

import numpy as np

from jaxvis import _checks, topk
from jaxvis.models import Model, Params

BANDS = {"low": (0.0, 0.125), "mid": (0.125, 0.25), "high": (0.25, 0.5 + 1e-9)}


def dead_fraction(model: Model, params: Params, batches, layer: str, threshold: float = 0.0):
    """Fraction of ``layer``'s maps never above ``threshold`` over the data, and their ids."""
    _checks.number("threshold", threshold)
    strongest = np.asarray(topk.top_k(model, params, batches, layer, k=1).value[:, 0])
    dead = np.flatnonzero(strongest <= threshold)
    return len(dead) / len(strongest), dead


def _power(kernel_HWIO, size: int):
    """Each filter's power spectrum (mean removed, summed over input channels), ``(size, size, O)``,
    and the row and column frequencies of its bins (cycles per pixel)."""
    k = np.asarray(kernel_HWIO)
    if k.ndim != 4 or k.dtype.kind not in "iuf" or not k.size:
        raise ValueError(f"kernel must be a non-empty array of numbers (H, W, in, out): HWIO, got {k.dtype} of shape "
                         f"{k.shape}")
    _checks.finite(k, "kernel")
    _checks.count("size", size)
    if size < max(k.shape[:2]):
        raise ValueError(f"size (the FFT's) must be at least the kernel's {max(k.shape[:2])} pixels, got {size}")
    k = k.astype(np.float64)
    k = k - k.mean(axis=(0, 1), keepdims=True)
    power = (np.abs(np.fft.fft2(k, s=(size, size), axes=(0, 1))) ** 2).sum(axis=2)
    fy, fx = np.meshgrid(np.fft.fftfreq(size), np.fft.fftfreq(size), indexing="ij")
    return power, fy, fx


def radial_spectrum(kernel_HWIO, size: int = 64):
    """``(frequencies_F, energy_OF)``: each filter's energy per radial frequency bin.

    The filter's mean is removed first (a constant offset is the DC term, not texture);
    each row is normalized to sum to 1 (a dead, all-zero filter stays all zero).
    """
    power, fy, fx = _power(kernel_HWIO, size)
    radius = np.sqrt(fy ** 2 + fx ** 2)
    bins = np.linspace(0.0, 0.5, size // 2 + 1)
    which = np.clip(np.digitize(radius, bins) - 1, 0, len(bins) - 2)
    inside = radius <= 0.5
    energy = np.stack([np.bincount(which[inside], power[..., o][inside], minlength=len(bins) - 1)
                       for o in range(power.shape[-1])])
    total = energy.sum(axis=1, keepdims=True)
    centres = 0.5 * (bins[:-1] + bins[1:])
    return centres, np.divide(energy, total, out=np.zeros_like(energy), where=total > 0)


def frequency_coverage(kernel_HWIO, size: int = 64) -> dict[str, float]:
    """Share of (non-dead) filters whose spectral peak lies in each band of :data:`BANDS`."""
    freqs, energy = radial_spectrum(kernel_HWIO, size)
    alive = energy.sum(axis=1) > 0
    peaks = freqs[np.argmax(energy[alive], axis=1)]
    return {band: float(np.mean((peaks >= lo) & (peaks < hi))) if alive.any() else 0.0
            for band, (lo, hi) in BANDS.items()}


def aliasing(kernel_HWIO, stride: int, size: int = 64) -> float:
    """Mean share of filter energy that a stride aliases: at row or column frequencies
    beyond its Nyquist frequency ``1 / (2 stride)`` (subsampling rows and columns by the
    stride folds them onto lower ones). Over the whole spectrum, corners included."""
    _checks.count("stride", stride)
    power, fy, fx = _power(kernel_HWIO, size)
    total = power.sum(axis=(0, 1))
    alive = total > 0
    if not alive.any():
        return 0.0
    beyond = np.maximum(np.abs(fy), np.abs(fx)) > 0.5 / stride
    return float((power[beyond].sum(axis=0)[alive] / total[alive]).mean())


def energy_above(kernel_HWIO, frequency: float, size: int = 64) -> float:
    """Mean share of filter energy at radial frequencies above ``frequency`` (cycles per
    pixel, of the disc up to 0.5 that :func:`radial_spectrum` bins)."""
    _checks.number("frequency (cycles per pixel)", frequency, 0.0, 0.5)
    freqs, energy = radial_spectrum(kernel_HWIO, size)
    alive = energy.sum(axis=1) > 0
    return float(energy[alive][:, freqs > frequency].sum(axis=1).mean()) if alive.any() else 0.0
