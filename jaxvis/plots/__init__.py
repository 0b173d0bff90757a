"""Figures: arrays in, matplotlib ``Figure`` out (never ``plt.show()``).

This module holds the primitives; each method's figures live beside it
(``jaxvis.plots.occlusion``, ...) and are built from these.

Display conventions, used by every figure:

- images are shown as pixels in [0, 1] (``model.denormalize`` then clipped);
- signed maps (projections, gradients) are shown *centred*: zero is mid-grey, and the
  panel's largest magnitude is black or white (per colour channel jointly), so the
  structure of each projection is visible whatever its scale, and the sign is kept.
"""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402


def centred(signed_HWC) -> np.ndarray:
    """A signed map scaled to [0, 1] with zero at 0.5 (the convention above)."""
    a = np.asarray(signed_HWC, np.float32)
    peak = float(np.abs(a).max())
    return np.full_like(a, 0.5) if peak == 0 else 0.5 + 0.5 * a / peak


def pixels(model, x_HWC) -> np.ndarray:
    """A normalized network input back to displayable pixels in [0, 1]."""
    return np.clip(np.asarray(model.denormalize(np.asarray(x_HWC))), 0.0, 1.0)


def show(ax, image_HWC, title: str | None = None) -> None:
    """One [0, 1] image on an axis, grey for one channel, no ticks."""
    img = np.asarray(image_HWC)
    if img.ndim == 3 and img.shape[-1] == 1:
        img = img[..., 0]
    ax.imshow(img, cmap="gray" if img.ndim == 2 else None, vmin=0.0, vmax=1.0, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title, fontsize=8)


def grid(panels: Sequence[Sequence[np.ndarray | None]], row_labels: Sequence[str] | None = None,
         col_labels: Sequence[str] | None = None, title: str | None = None, size: float = 1.4) -> Figure:
    """A rows x columns figure of [0, 1] images; ``None`` leaves a cell empty."""
    rows, cols = len(panels), max(len(r) for r in panels)
    fig, axes = plt.subplots(rows, cols, figsize=(size * cols + 0.6, size * rows + 0.6), squeeze=False)
    for i, row in enumerate(panels):
        for j in range(cols):
            ax = axes[i, j]
            cell = row[j] if j < len(row) else None
            if cell is None:
                ax.axis("off")
                continue
            show(ax, cell, col_labels[j] if (col_labels and i == 0) else None)
            if row_labels and j == 0:
                ax.set_ylabel(row_labels[i], fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def save(fig: Figure, path) -> None:
    """Write a figure (PNG by suffix) and release its memory."""
    fig.savefig(path, dpi=110)
    plt.close(fig)
