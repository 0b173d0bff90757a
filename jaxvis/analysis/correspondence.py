"""Correspondence analysis (Zeiler & Fergus Sec. 4.3, Table 1).

Mask the same part of N images; if a layer encodes the part consistently, the change it
causes, ``epsilon_i = x_i - x~_i`` (features of the original minus features of the
occluded image), points the same way in every image. Consistency is measured by

    Delta_l = mean over ordered pairs i != j of H(sign(epsilon_i), sign(epsilon_j)) / D,

H the Hamming distance and D the feature length: the paper's sum over pairs, normalized
by the vector length and the number of pairs (its values near 0.07 imply such a
normalization; it does not say which). Lower is more consistent. Random boxes of the
same size are the control. Mean and std are over all pairs (and, for random boxes, all
repeats).

For digits, where most of the image is background that a black mask leaves unchanged,
:func:`part_boxes` places one box per image by a rule on the ink (centred on the ink of
a band of the ink's bounding box: the lower half of a 6 is its loop), and
:func:`ink_boxes` gives the matching control: boxes of the same size centred on
randomly chosen ink pixels.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np

from jaxvis import _checks
from jaxvis.models import Model, Params


@dataclasses.dataclass(frozen=True)
class Consistency:
    """Delta per layer: ``mean`` and ``std`` over pairs, and the pairwise values."""

    mean: dict[str, float]
    std: dict[str, float]
    pairwise: dict[str, np.ndarray]


def pairwise_hamming(eps_ND) -> jax.Array:
    """``(N, N)`` normalized Hamming distances between the sign patterns of the rows."""
    if np.ndim(eps_ND) != 2 or not np.shape(eps_ND)[1]:
        raise ValueError(f"eps_ND must be a matrix (N, D) of one change per row, got shape {np.shape(eps_ND)}")
    _checks.finite(eps_ND, "eps_ND")
    signs = jnp.sign(eps_ND)
    return jnp.mean(signs[:, None, :] != signs[None, :, :], axis=-1)


def check_boxes(boxes_N4, image_hw, count: int) -> np.ndarray:
    """Boxes ``(top, left, height, width)``: one per image, all one size, inside the image."""
    given = np.asarray(boxes_N4)
    if given.dtype.kind not in "iuf" or given.size % 4:
        raise ValueError(f"boxes must be numbers, 4 per box (top, left, height, width), got {given.dtype} of shape "
                         f"{given.shape}")
    _checks.finite(given, "boxes")
    if given.dtype.kind not in "iu" and not np.array_equal(given, np.round(given)):
        raise ValueError(f"boxes must hold whole pixels, got {given[given != np.round(given)][:5].tolist()}")
    boxes = given.astype(np.int64).reshape(-1, 4)
    if len(boxes) != count:
        raise ValueError(f"need one box per image: {count} images, got {len(boxes)} boxes")
    sizes = sorted({tuple(int(v) for v in b[2:]) for b in boxes})
    if len(sizes) != 1:
        raise ValueError(f"all boxes must have the same size, got sizes {sizes}")
    h, w = image_hw
    bad = [b.tolist() for b in boxes
           if b[2] < 1 or b[3] < 1 or b[0] < 0 or b[1] < 0 or b[0] + b[2] > h or b[1] + b[3] > w]
    if bad:
        raise ValueError(f"boxes must lie inside the {h}x{w} image with positive size, got {bad}")
    return boxes


def occlude(x_HWC, box, fill):
    """The image with ``box`` (top, left, height, width; traced values allowed) set to ``fill``."""
    if np.ndim(x_HWC) != 3 or np.shape(box) != (4,):
        raise ValueError(f"occlude takes one image (H, W, C) and one box (top, left, height, width), got shapes "
                         f"{np.shape(x_HWC)} and {np.shape(box)}")
    h, w = x_HWC.shape[:2]
    rows = jnp.arange(h).reshape(h, 1, 1)
    cols = jnp.arange(w).reshape(1, w, 1)
    inside = (rows >= box[0]) & (rows < box[0] + box[2]) & (cols >= box[1]) & (cols < box[1] + box[3])
    return jnp.where(inside, jnp.asarray(fill, x_HWC.dtype).reshape(1, 1, -1), x_HWC)


@functools.partial(jax.jit, static_argnames=("model", "layers"))
def _changes(model, params, x_NHWC, boxes_N4, fill, layers):
    occluded = jax.vmap(occlude, in_axes=(0, 0, None))(x_NHWC, boxes_N4, fill)
    _, original = model.apply(params, x_NHWC)
    _, masked = model.apply(params, occluded)
    n = x_NHWC.shape[0]
    return {layer: (original.activations[layer] - masked.activations[layer]).reshape(n, -1) for layer in layers}


def _check_images(model: Model, x_NHWC) -> jax.Array:
    _checks.images(x_NHWC, model.input_shape)
    if np.shape(x_NHWC)[0] < 2:
        raise ValueError(f"correspondence needs at least two images (N, H, W, C), got shape {np.shape(x_NHWC)}")
    return jnp.asarray(x_NHWC)


def _check_layers(model: Model, layers) -> tuple[str, ...]:
    layers = (layers,) if isinstance(layers, str) else tuple(layers)
    if not layers:
        raise ValueError("correspondence needs at least one layer to compare, got none")
    for layer in layers:
        model.check_layer(layer)
    return layers


def consistency(model: Model, params: Params, x_NHWC, boxes, layers, fill=0.0) -> Consistency:
    """Delta_l for one part: the same part boxed in each of the N images.

    Args:
      model, params: the network.
      x_NHWC: the normalized images, N >= 2.
      boxes: ``(N, 4)`` boxes (top, left, height, width), one per image, all one size; or
        ``(R, N, 4)``: R maskings of the images, their pairs pooled (a control's repeats).
      layers: the layers whose changes are compared.
      fill: the mask's value in the normalized space (0 is the mean).
    """
    x = _check_images(model, x_NHWC)
    layers = _check_layers(model, layers)
    if np.ndim(fill) not in (0, 1) or np.size(fill) not in (1, x.shape[-1]):
        raise ValueError(f"fill must be one value or one per channel ({x.shape[-1]}), got shape {np.shape(fill)}")
    _checks.finite(fill, "fill")
    given = np.asarray(boxes)
    boxes_RN4 = given[None] if given.ndim <= 2 else given
    if boxes_RN4.ndim != 3 or boxes_RN4.shape[-1] != 4:
        raise ValueError(f"boxes must have shape (N, 4) or (R, N, 4), got {given.shape}")
    checked = np.stack([check_boxes(b, x.shape[1:3], x.shape[0]) for b in boxes_RN4])
    sizes = sorted({tuple(b) for b in checked[:, 0, 2:].tolist()})
    if len(sizes) != 1:
        raise ValueError(f"all boxes must have the same size, got sizes {sizes}")
    return _summarize(_pairwise(model, params, x, checked, fill, layers))


def _pairwise(model, params, x, boxes_RN4, fill, layers) -> dict[str, list[np.ndarray]]:
    n = x.shape[0]
    off_diagonal = ~np.eye(n, dtype=bool)
    out = {layer: [] for layer in layers}
    fill = jnp.broadcast_to(jnp.asarray(fill, x.dtype), (x.shape[-1],))
    for boxes in boxes_RN4:
        eps = _changes(model, params, x, jnp.asarray(boxes), fill, layers)
        for layer in layers:
            out[layer].append(np.asarray(pairwise_hamming(eps[layer]))[off_diagonal])
    return out


def _summarize(pairs: dict[str, list[np.ndarray]]) -> Consistency:
    flat = {layer: np.concatenate(v) for layer, v in pairs.items()}
    return Consistency({l: float(v.mean()) for l, v in flat.items()}, {l: float(v.std()) for l, v in flat.items()},
                       flat)


def _check_box_size(box_hw, image_hw) -> tuple[int, int]:
    h, w = image_hw
    if (np.ndim(box_hw) != 1 or len(box_hw) != 2 or np.asarray(box_hw).dtype.kind not in "iuf"
            or any(not np.isfinite(v) or int(v) != v or v < 1 for v in box_hw)):
        raise ValueError(f"box size must be two whole numbers >= 1 (height, width), got {tuple(box_hw)}")
    if box_hw[0] > h or box_hw[1] > w:
        raise ValueError(f"a {box_hw[0]}x{box_hw[1]} box does not fit in a {h}x{w} image")
    return int(box_hw[0]), int(box_hw[1])


def _placed(centre_y, centre_x, box_hw, image_hw) -> np.ndarray:
    """Boxes of ``box_hw`` centred on the given points, shifted to lie inside the image: ``(..., 4)``."""
    (bh, bw), (h, w) = box_hw, image_hw
    top = np.clip(np.round(centre_y - (bh - 1) / 2), 0, h - bh).astype(np.int64)
    left = np.clip(np.round(centre_x - (bw - 1) / 2), 0, w - bw).astype(np.int64)
    return np.stack([top, left, np.full_like(top, bh), np.full_like(left, bw)], -1)


def _ink(pixels, threshold: float) -> np.ndarray:
    """``(N, H, W)`` ink mask of pixels (float in [0, 1] or uint8; channels: the brightest)."""
    _checks.number("threshold", threshold, 0.0, 1.0)
    p = np.asarray(pixels)
    if p.dtype != np.uint8 and p.dtype.kind != "f":
        raise ValueError(f"pixels must be uint8 in [0, 255] or floats in [0, 1], got dtype {p.dtype}")
    _checks.finite(p, "pixels")
    p = p.astype(np.float32) / 255.0 if p.dtype == np.uint8 else p.astype(np.float32)
    if p.ndim == 4:
        p = p.max(axis=-1)
    if p.ndim != 3:
        raise ValueError(f"pixels must have shape (N, H, W) or (N, H, W, C), got {np.shape(pixels)}")
    if not len(p):
        raise ValueError(f"pixels must hold at least one image, got shape {np.shape(pixels)}")
    ink = p > threshold
    empty = np.flatnonzero(~ink.any(axis=(1, 2)))
    if empty.size:
        raise ValueError(f"images {empty[:5].tolist()} have no ink (no pixel above {threshold})")
    return ink


def part_boxes(pixels, box_hw, rows=(0.0, 1.0), cols=(0.0, 1.0), threshold: float = 0.5) -> np.ndarray:
    """One box per image on the same part: the rule of :mod:`correspondence` for digits.

    Ink is the pixels above ``threshold``. The box of ``box_hw`` is centred on the centroid
    of the ink inside a band of the ink's bounding box: rows from ``rows[0]`` to ``rows[1]``
    of its height (0 is its top) and columns from ``cols[0]`` to ``cols[1]`` of its width,
    then shifted to lie inside the image. E.g. the loop of a 6: ``rows=(0.5, 1)``; the bar
    of a 7: ``rows=(0, 0.25)``.

    Args:
      pixels: ``(N, H, W)`` or ``(N, H, W, C)`` images, float in [0, 1] or uint8.

    Returns:
      ``(N, 4)`` boxes (top, left, height, width).
    """
    ink_NHW = _ink(pixels, threshold)
    n, h, w = ink_NHW.shape
    box_hw = _check_box_size(box_hw, (h, w))
    for name, band in (("rows", rows), ("cols", cols)):
        if (np.ndim(band) != 1 or len(band) != 2 or np.asarray(band).dtype.kind not in "iuf"
                or not 0.0 <= band[0] < band[1] <= 1.0):
            raise ValueError(f"{name} must be a band (start, stop) with 0 <= start < stop <= 1, got {tuple(band)}")

    def band_mask(any_NL, band):
        length = any_NL.shape[1]
        first = any_NL.argmax(axis=1)
        last = length - any_NL[:, ::-1].argmax(axis=1)  # exclusive
        extent = (last - first)[:, None]
        index = np.arange(length)[None, :]
        return (index >= first[:, None] + band[0] * extent) & (index < first[:, None] + band[1] * extent)

    rows_NH, cols_NW = band_mask(ink_NHW.any(axis=2), rows), band_mask(ink_NHW.any(axis=1), cols)
    inside_NHW = ink_NHW & rows_NH[:, :, None] & cols_NW[:, None, :]
    count_N = inside_NHW.sum(axis=(1, 2))
    if (count_N == 0).any():
        raise ValueError(f"images {np.flatnonzero(count_N == 0)[:5].tolist()} have no ink in the band "
                         f"rows={tuple(rows)}, cols={tuple(cols)} of their ink's bounding box")
    centre_y = (inside_NHW * np.arange(h)[None, :, None]).sum(axis=(1, 2)) / count_N
    centre_x = (inside_NHW * np.arange(w)[None, None, :]).sum(axis=(1, 2)) / count_N
    return _placed(centre_y, centre_x, box_hw, (h, w))


def _check_seed(seed) -> None:
    if not isinstance(seed, (int, np.integer, np.random.Generator)) or isinstance(seed, bool) or (
            not isinstance(seed, np.random.Generator) and seed < 0):
        raise ValueError(f"seed must be an integer >= 0 or a numpy.random.Generator, got {type(seed).__name__} "
                         f"{seed!r}")


def ink_boxes(pixels, box_hw, repeats: int, seed: int = 0, threshold: float = 0.5) -> np.ndarray:
    """``(repeats, N, 4)`` boxes of ``box_hw``, each centred on an ink pixel of its image drawn
    uniformly at random (then shifted inside the image): the control for :func:`part_boxes`.
    ``seed``: an int, or a ``numpy.random.Generator`` to draw from."""
    ink_NHW = _ink(pixels, threshold)
    n, h, w = ink_NHW.shape
    box_hw = _check_box_size(box_hw, (h, w))
    _checks.count("repeats", repeats)
    _check_seed(seed)
    cumulative_NP = np.cumsum(ink_NHW.reshape(n, -1), axis=1)
    draw_RN = np.random.default_rng(seed).integers(0, cumulative_NP[:, -1], (repeats, n))  # which ink pixel
    flat_RN = (cumulative_NP[None] > draw_RN[..., None]).argmax(axis=-1)
    return _placed(flat_RN // w, flat_RN % w, box_hw, (h, w))


def random_boxes(image_hw, box_hw, count: int, repeats: int, seed: int = 0) -> np.ndarray:
    """``(repeats, count, 4)`` boxes of one size at uniformly random positions."""
    if np.ndim(image_hw) != 1 or len(image_hw) != 2 or not all(
            isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v >= 1 for v in image_hw):
        raise ValueError(f"image_hw must be (height, width), two integers >= 1, got {image_hw!r}")
    _checks.count("count", count)
    _checks.count("repeats", repeats)
    _check_seed(seed)
    rng = np.random.default_rng(seed)
    h, w = image_hw
    box_hw = _check_box_size(box_hw, image_hw)
    tops = rng.integers(0, h - box_hw[0] + 1, (repeats, count))
    lefts = rng.integers(0, w - box_hw[1] + 1, (repeats, count))
    return np.stack([tops, lefts, np.full_like(tops, box_hw[0]), np.full_like(lefts, box_hw[1])], -1)


def random_control(model: Model, params: Params, x_NHWC, box_hw, layers, repeats: int = 10, fill=0.0,
                   seed: int = 0) -> Consistency:
    """Delta_l for random boxes of ``box_hw``, a new random box per image in each repeat."""
    x = _check_images(model, x_NHWC)
    return consistency(model, params, x, random_boxes(x.shape[1:3], box_hw, x.shape[0], repeats, seed), layers, fill)
