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
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np

from jaxvis.models import Model, Params


@dataclasses.dataclass(frozen=True)
class Consistency:
    """Delta per layer: ``mean`` and ``std`` over pairs, and the pairwise values."""

    mean: dict[str, float]
    std: dict[str, float]
    pairwise: dict[str, np.ndarray]


def pairwise_hamming(eps_ND) -> jax.Array:
    """``(N, N)`` normalized Hamming distances between the sign patterns of the rows."""
    signs = jnp.sign(eps_ND)
    return jnp.mean(signs[:, None, :] != signs[None, :, :], axis=-1)


def check_boxes(boxes_N4, image_hw, count: int) -> np.ndarray:
    """Boxes ``(top, left, height, width)``: one per image, all one size, inside the image."""
    boxes = np.asarray(boxes_N4, np.int64).reshape(-1, 4)
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


def consistency(model: Model, params: Params, x_NHWC, boxes_N4, layers, fill=0.0) -> Consistency:
    """Delta_l for one part: the same part boxed in each of the N images.

    ``x_NHWC`` are normalized images; ``fill`` is in the same space (0 is the mean grey).
    """
    x = jnp.asarray(x_NHWC)
    if x.ndim != 4 or x.shape[0] < 2:
        raise ValueError(f"correspondence needs at least two images (N, H, W, C), got shape {tuple(x.shape)}")
    boxes = check_boxes(boxes_N4, x.shape[1:3], x.shape[0])
    return _summarize(_pairwise(model, params, x, boxes[None], fill, tuple(layers)))


def _pairwise(model, params, x, boxes_RN4, fill, layers) -> dict[str, list[np.ndarray]]:
    for layer in layers:
        model.check_layer(layer)
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


def random_boxes(image_hw, box_hw, count: int, repeats: int, seed: int = 0) -> np.ndarray:
    """``(repeats, count, 4)`` boxes of one size at uniformly random positions."""
    rng = np.random.default_rng(seed)
    h, w = image_hw
    if box_hw[0] > h or box_hw[1] > w:
        raise ValueError(f"a {box_hw[0]}x{box_hw[1]} box does not fit in a {h}x{w} image")
    tops = rng.integers(0, h - box_hw[0] + 1, (repeats, count))
    lefts = rng.integers(0, w - box_hw[1] + 1, (repeats, count))
    return np.stack([tops, lefts, np.full_like(tops, box_hw[0]), np.full_like(lefts, box_hw[1])], -1)


def random_control(model: Model, params: Params, x_NHWC, box_hw, layers, repeats: int = 10, fill=0.0,
                   seed: int = 0) -> Consistency:
    """Delta_l for random boxes of ``box_hw``, a new random box per image in each repeat."""
    x = jnp.asarray(x_NHWC)
    if x.ndim != 4 or x.shape[0] < 2:
        raise ValueError(f"correspondence needs at least two images (N, H, W, C), got shape {tuple(x.shape)}")
    boxes = random_boxes(x.shape[1:3], box_hw, x.shape[0], repeats, seed)
    return _summarize(_pairwise(model, params, x, boxes, fill, tuple(layers)))
