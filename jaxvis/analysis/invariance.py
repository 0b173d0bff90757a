"""Feature invariance to translation, scale and rotation (Zeiler & Fergus Sec. 4.3, Fig. 5).

For each image and each amount of a transform, the Euclidean distance between the
feature vectors of the original and the transformed image at chosen layers (raw, and
relative to the original's norm), the probability of the true label and the predicted
label. All transforms of all images run through batched, jitted calls.

Transforms act on pixels in [0, 1] (before ``model.normalize``), about the image centre,
by bilinear resampling; what comes in from outside the image is ``fill`` (default 0,
black: MNIST's background). Amounts: ``translate_v`` / ``translate_h`` in pixels
(positive = down / right), ``scale`` as a zoom factor (> 0; 1 is the identity),
``rotate`` in degrees (counter-clockwise).
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy import ndimage

from jaxvis import _checks
from jaxvis.models import Model, Params

FAMILIES = ("translate_v", "translate_h", "scale", "rotate")


def _inverse_map(family: str, amount, h: int, w: int):
    """Input coordinates (row, col) that each output pixel samples from."""
    cy, cx = (h - 1) / 2.0, (w - 1) / 2.0
    rows, cols = jnp.meshgrid(jnp.arange(h, dtype=jnp.float32), jnp.arange(w, dtype=jnp.float32), indexing="ij")
    y, x = rows - cy, cols - cx
    if family == "translate_v":
        y = y - amount
    elif family == "translate_h":
        x = x - amount
    elif family == "scale":
        y, x = y / amount, x / amount
    else:  # rotate: output at angle theta came from the input at angle -theta
        t = jnp.deg2rad(amount)
        y, x = jnp.cos(t) * y + jnp.sin(t) * x, -jnp.sin(t) * y + jnp.cos(t) * x
    return y + cy, x + cx


def transform(pixels_HWC, family: str, amount, fill: float = 0.0):
    """One image (pixels in [0, 1]) transformed by ``amount`` of ``family``."""
    _checks.choice("transform family", family, FAMILIES)
    if np.ndim(pixels_HWC) != 3:
        raise ValueError(f"transform takes one image (H, W, C), got shape {np.shape(pixels_HWC)}")
    _checks.number(f"{family} amount", amount)
    _checks.number("fill (a pixel value)", fill, 0.0, 1.0)
    h, w, c = pixels_HWC.shape
    rows, cols = _inverse_map(family, amount, h, w)
    # zero outside the image, shifted so that the outside reads ``fill`` (which may be traced)
    sample = lambda ch: ndimage.map_coordinates(ch - fill, [rows, cols], order=1, mode="constant", cval=0.0) + fill
    return jnp.stack([sample(pixels_HWC[..., i]) for i in range(c)], axis=-1)


@dataclasses.dataclass(frozen=True)
class Invariance:
    """Results for one family: arrays are ``(images, amounts)``; ``distance`` and
    ``relative`` map each layer to its Euclidean and norm-relative distances."""

    family: str
    amounts: np.ndarray
    distance: dict[str, np.ndarray]
    relative: dict[str, np.ndarray]
    true_prob: np.ndarray
    predicted: np.ndarray


def check_amounts(family: str, amounts, image_hw: tuple[int, int] | None = None) -> np.ndarray:
    """The amounts as a float32 vector, checked: finite, scale factors > 0 and, given the
    image size, translations that leave part of the image in view (|shift| < its size)."""
    _checks.choice("transform family", family, FAMILIES)
    amounts = np.asarray(amounts)
    if amounts.dtype.kind not in "iuf" or amounts.ndim > 1:
        raise ValueError(f"{family} amounts must be a list of numbers, got {amounts.dtype} of shape {amounts.shape}")
    amounts = amounts.astype(np.float32).ravel()
    if amounts.size == 0:
        raise ValueError(f"{family}: give at least one amount")
    _checks.finite(amounts, f"{family} amounts")
    if family == "scale" and (amounts <= 0).any():
        raise ValueError(f"scale amounts must be > 0 (a zoom factor), got {amounts[amounts <= 0].tolist()}")
    if image_hw is not None and family in ("translate_v", "translate_h"):
        size = image_hw[0] if family == "translate_v" else image_hw[1]
        out = np.abs(amounts) >= size
        if out.any():
            raise ValueError(f"{family} amounts must lie in (-{size}, {size}) pixels (beyond, the whole image "
                             f"leaves the view), got {amounts[out].tolist()}")
    return amounts


@functools.partial(jax.jit, static_argnames=("model", "layers", "family"))
def _features(model, params, pixels_NHWC, amounts_A, layers, family, fill):
    """Features of the originals ``(N, 1, D)`` and of every (image, amount) pair ``(N, A, D)``,
    and the pairs' probabilities. One forward pass for both, so that a transform that
    leaves an image as it is gives exactly its original's features."""
    n, a = pixels_NHWC.shape[0], amounts_A.shape[0]
    moved = jax.vmap(lambda img: jax.vmap(lambda t: transform(img, family, t, fill))(amounts_A))(pixels_NHWC)
    both = jnp.concatenate([pixels_NHWC[:, None], moved], axis=1).reshape(n * (a + 1), *pixels_NHWC.shape[1:])
    logits, trace = model.apply(params, model.normalize(both))
    feats = {layer: trace.activations[layer].reshape(n, a + 1, -1) for layer in layers}
    original = {layer: f[:, :1] for layer, f in feats.items()}
    return original, {layer: f[:, 1:] for layer, f in feats.items()}, jax.nn.softmax(logits).reshape(n, a + 1, -1)[:, 1:]


def measure(model: Model, params: Params, pixels_NHWC, labels_N, family: str, amounts, layers,
            fill: float = 0.0, chunk: int = 64) -> Invariance:
    """Fig. 5 for one transform family.

    Args:
      model, params: the network.
      pixels_NHWC: the images as pixels (float in [0, 1], or uint8), ``(N, *model.input_shape)``.
      labels_N: their true classes.
      family: one of :data:`FAMILIES`.
      amounts: ``(A,)`` amounts of the transform (see the module docstring for units).
      layers: names of the layers whose outputs are compared (flattened).
      fill: the pixel value that comes in from outside the image.
      chunk: images per batched call.

    Returns:
      :class:`Invariance` with ``(N, A)`` arrays.
    """
    amounts = check_amounts(family, amounts, model.input_shape[:2])
    layers = (layers,) if isinstance(layers, str) else tuple(layers)
    if not layers:
        raise ValueError("measure needs at least one layer to compare, got none")
    for layer in layers:
        model.check_layer(layer)
    pixels = np.asarray(pixels_NHWC)
    if pixels.dtype != np.uint8 and pixels.dtype.kind != "f":
        raise ValueError(f"pixels must be uint8 in [0, 255] or floats in [0, 1], got dtype {pixels.dtype}")
    pixels = pixels.astype(np.float32) / 255.0 if pixels.dtype == np.uint8 else pixels.astype(np.float32)
    _checks.images(pixels, model.input_shape, what="pixels")
    if not len(pixels):
        raise ValueError(f"pixels must hold at least one image, got shape {pixels.shape}")
    if pixels.min() < 0 or pixels.max() > 1:
        raise ValueError(f"pixels must lie in [0, 1] (before model.normalize), got values from {pixels.min():.3g} "
                         f"to {pixels.max():.3g}")
    _checks.number("fill (a pixel value)", fill, 0.0, 1.0)
    labels = _checks.labels(labels_N, len(pixels), model.num_classes)
    _checks.count("chunk", chunk)
    out = {"distance": {l: [] for l in layers}, "relative": {l: [] for l in layers}, "prob": [], "pred": []}
    for s in range(0, len(pixels), chunk):
        x = jnp.asarray(pixels[s:s + chunk])
        original, feats, probs = _features(model, params, x, jnp.asarray(amounts), layers, family, fill)
        for layer in layers:
            d = jnp.linalg.norm(feats[layer] - original[layer], axis=-1)
            out["distance"][layer].append(np.asarray(d))
            out["relative"][layer].append(np.asarray(d / jnp.maximum(jnp.linalg.norm(original[layer], axis=-1), 1e-12)))
        y = labels[s:s + chunk]
        out["prob"].append(np.asarray(probs)[np.arange(len(y)), :, y])
        out["pred"].append(np.asarray(jnp.argmax(probs, -1)))
    cat = lambda parts: np.concatenate(parts, axis=0)
    return Invariance(family, amounts, {l: cat(v) for l, v in out["distance"].items()},
                      {l: cat(v) for l, v in out["relative"].items()}, cat(out["prob"]), cat(out["pred"]))
