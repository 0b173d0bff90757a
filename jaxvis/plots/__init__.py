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

import textwrap
from collections.abc import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

CHAR_WIDTH = 0.6  # a character's mean width in ems (DejaVu Sans), for wrapping
TITLE_WIDTH = 7.0  # inches: grids widen up to this for their title, then wrap it


def centred(signed_HWC) -> np.ndarray:
    """A signed map scaled to [0, 1] with zero at 0.5 (the convention above)."""
    a = np.asarray(signed_HWC, np.float32)
    peak = float(np.abs(a).max())
    return np.full_like(a, 0.5) if peak == 0 else 0.5 + 0.5 * a / peak


def pixels(model, x_HWC) -> np.ndarray:
    """A normalized network input back to displayable pixels in [0, 1]."""
    return np.clip(np.asarray(model.denormalize(np.asarray(x_HWC))), 0.0, 1.0)


def field_crop(image_HWC, window) -> np.ndarray:
    """The part of a full-size image inside ``window`` (top, left, height, width; a
    receptive field's :meth:`~jaxvis.models.ReceptiveField.window`), clipped to the image."""
    top, left, h, w = (int(v) for v in window)
    image = np.asarray(image_HWC)
    return image[max(0, top):max(0, min(image.shape[0], top + h)), max(0, left):max(0, min(image.shape[1], left + w))]


def wrap(text: str | None, width_in: float, fontsize: float) -> str | None:
    """``text`` broken into lines that fit ``width_in`` inches at ``fontsize`` points (its
    own line breaks kept)."""
    if not text:
        return text
    chars = max(8, int(width_in * 72 / (CHAR_WIDTH * fontsize)))
    return "\n".join(textwrap.fill(line, chars) or line for line in text.split("\n"))


def palette(count: int) -> list[tuple[float, float, float, float]]:
    """``count`` distinct colours: a qualitative palette (tab10, tab20, then tab20 + tab20b
    + tab20c's 60), beyond that evenly spaced hues."""
    if count <= 10:
        return [matplotlib.colormaps["tab10"](i) for i in range(count)]
    if count <= 20:
        return [matplotlib.colormaps["tab20"](i) for i in range(count)]
    if count <= 60:
        return [matplotlib.colormaps[m](i) for m in ("tab20", "tab20b", "tab20c") for i in range(20)][:count]
    return [matplotlib.colormaps["hsv"](i / count) for i in range(count)]


def shorten(name: str, most: int = 18) -> str:
    """A name cut to ``most`` characters, with an ellipsis where cut."""
    return name if len(name) <= most else name[:most - 1] + "\u2026"


def show(ax, image_HWC, title: str | None = None, width_in: float | None = None) -> None:
    """One [0, 1] image on an axis, grey for one channel, no ticks; the title wrapped to
    ``width_in`` inches if given."""
    img = np.asarray(image_HWC)
    if img.ndim == 3 and img.shape[-1] == 1:
        img = img[..., 0]
    ax.imshow(img, cmap="gray" if img.ndim == 2 else None, vmin=0.0, vmax=1.0, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title if width_in is None else wrap(title, width_in, 8), fontsize=8)


def grid(panels: Sequence[Sequence[np.ndarray | None]], row_labels: Sequence[str] | None = None,
         col_labels: Sequence[str] | None = None, title: str | None = None, size: float = 1.4) -> Figure:
    """A rows x columns figure of [0, 1] images; ``None`` leaves a cell empty. Column
    labels are wrapped to their cell; the figure is as wide as a title of up to
    :data:`TITLE_WIDTH` inches needs, and the title wraps beyond that."""
    rows, cols = len(panels), max(len(r) for r in panels)
    width = size * cols + 0.6
    if title:
        width = max(width, min(TITLE_WIDTH, len(max(title.split("\n"), key=len)) * CHAR_WIDTH * 10 / 72 + 0.4))
        title = wrap(title, width - 0.3, 10)
    head = 0.2 * title.count("\n") if title else 0.0
    fig, axes = plt.subplots(rows, cols, figsize=(width, size * rows + 0.6 + head), squeeze=False)
    for i, row in enumerate(panels):
        for j in range(cols):
            ax = axes[i, j]
            cell = row[j] if j < len(row) else None
            if cell is None:
                ax.axis("off")
                continue
            show(ax, cell, col_labels[j] if (col_labels and i == 0) else None, width_in=size)
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
