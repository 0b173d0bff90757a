"""Saliency: which pixels a class score depends on, where the object is, and how faithful a map is.

- :func:`gradients` and :func:`saliency`: Simonyan, Vedaldi & Zisserman (arXiv 1312.6034)
  Sec. 3.1, the image-specific class saliency map ``M_ij = max_c |dS_c/dI_ijc|`` with
  ``S_c`` the unnormalized class score (the logit), for many images and classes in one
  call: one forward pass per batch, one vmapped backward pass per class. The ReLU rule
  picks the method (Simonyan Sec. 4; Springenberg et al.): ``gradient`` (saliency),
  ``guided`` (guided backpropagation) or ``deconvnet`` (Zeiler & Fergus).
- :func:`smoothgrad` (Smilkov et al. 2017) and :func:`integrated_gradients`
  (Sundararajan et al. 2017), as wrappers of :func:`gradients`.
- :func:`localization_box`: Simonyan Sec. 3.2's weakly supervised localization, with the
  GraphCut segmentation replaced by a threshold at a quantile of the map; the box is
  that of the largest connected foreground component (:func:`largest_component`).
- :func:`deletion` and :func:`insertion`: faithfulness curves (Petsiuk et al. 2018, RISE
  Sec. 4.1): pixels removed from the image (set to a baseline) or added to the baseline
  in saliency order, the class probability tracked; the area under each curve summarizes
  it (deletion: lower is more faithful; insertion: higher).

Classes are given as one index for all images, one per image ``(N,)``, or several per
image ``(N, K)``; results carry the same leading axes.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np

from jaxvis import _checks
from jaxvis.models import Model, Params

CONNECTIVITY = (4, 8)


def _classes_NK(model: Model, x_NHWC, classes) -> tuple[jax.Array, bool]:
    """Class indices as ``(N, K)`` and whether the caller gave a K axis."""
    _checks.images(x_NHWC, model.input_shape)
    _checks.index("class", classes, model.num_classes)
    classes = jnp.asarray(classes)
    n = x_NHWC.shape[0]
    if classes.ndim == 0:
        return jnp.broadcast_to(classes, (n, 1)), False
    if classes.ndim > 2 or classes.shape[0] != n:
        raise ValueError(f"classes must be one index, shape (N,) or shape (N, K) with N = {n} images, "
                         f"got shape {classes.shape}")
    return (classes[:, None], False) if classes.ndim == 1 else (classes, True)


def _unstack(per_class_NK, several: bool):
    return per_class_NK if several else per_class_NK[:, 0]


@functools.partial(jax.jit, static_argnames=("model", "rule"))
def _gradients(model: Model, params: Params, x_NHWC, classes_NK, rule: str):
    """``dS_c/dx`` for each image and each of its classes: ``(N, K, H, W, C)``."""
    logits_NC, pullback = jax.vjp(lambda x: model.apply(params, x, rule=rule)[0], x_NHWC)
    onehot_KNC = jax.nn.one_hot(classes_NK.T, logits_NC.shape[-1], dtype=logits_NC.dtype)
    (grads_KNHWC,) = jax.vmap(pullback)(onehot_KNC)
    return jnp.moveaxis(grads_KNHWC, 0, 1)


def gradients(model: Model, params: Params, x_NHWC, classes, rule: str = "gradient") -> jax.Array:
    """The signed backward signal ``dS_c/dI`` of each class score to the normalized input.

    Args:
      model, params: the network.
      x_NHWC: normalized images.
      classes: one class for all images, ``(N,)`` or ``(N, K)``.
      rule: ``gradient``, ``guided`` or ``deconvnet`` (see :mod:`jaxvis.rules`).

    Returns:
      ``(N, H, W, C)``, or ``(N, K, H, W, C)`` for ``(N, K)`` classes.
    """
    classes_NK, several = _classes_NK(model, x_NHWC, classes)
    return _unstack(_gradients(model, params, x_NHWC, classes_NK, rule), several)


def to_map(attributions_HWC) -> jax.Array:
    """Simonyan's map from a signed attribution: the largest magnitude over channels."""
    return jnp.abs(attributions_HWC).max(axis=-1)


def saliency(model: Model, params: Params, x_NHWC, classes, rule: str = "gradient") -> jax.Array:
    """Image-specific class saliency ``max_c |dS_c/dI|``: ``(N, H, W)`` or ``(N, K, H, W)``."""
    return to_map(gradients(model, params, x_NHWC, classes, rule))


def smoothgrad(model: Model, params: Params, x_NHWC, classes, key: jax.Array, samples: int = 50,
               noise: float = 0.15, rule: str = "gradient", chunk: int = 10) -> jax.Array:
    """SmoothGrad: :func:`gradients` averaged over noisy copies of each image.

    The noise is Gaussian with standard deviation ``noise * (max(x) - min(x))`` per image
    (Smilkov et al.'s noise level); copy ``s`` of the batch draws it with
    ``jax.random.normal(jax.random.split(key, samples)[s], x_NHWC.shape)``. ``chunk``
    noisy copies of the batch go through the network at once. Shapes as :func:`gradients`.
    """
    classes_NK, several = _classes_NK(model, x_NHWC, classes)
    _checks.count("samples", samples)
    _checks.positive("noise", noise, strict=False)
    _checks.count("chunk", chunk)
    return _unstack(_smoothgrad(model, params, x_NHWC, classes_NK, key, samples, noise, rule, chunk), several)


@functools.partial(jax.jit, static_argnames=("model", "samples", "rule", "chunk"))
def _smoothgrad(model, params, x_NHWC, classes_NK, key, samples, noise, rule, chunk):
    spread_N111 = (x_NHWC.max(axis=(1, 2, 3)) - x_NHWC.min(axis=(1, 2, 3))).reshape(-1, 1, 1, 1)

    def noisy_gradients(k):
        x = x_NHWC + noise * spread_N111 * jax.random.normal(k, x_NHWC.shape, x_NHWC.dtype)
        return _gradients(model, params, x, classes_NK, rule)

    return jax.lax.map(noisy_gradients, jax.random.split(key, samples), batch_size=chunk).mean(axis=0)


def integrated_gradients(model: Model, params: Params, x_NHWC, classes, baseline_NHWC=None, steps: int = 64,
                         chunk: int = 16) -> jax.Array:
    """Integrated gradients ``(x - x') * mean over the path of dS_c/dI`` (midpoint rule).

    Completeness: the attributions of an image sum to ``S_c(x) - S_c(x')`` up to the
    quadrature error of ``steps`` points. The default baseline ``x'`` is the black image
    (pixels 0, normalized). Shapes as :func:`gradients`.
    """
    classes_NK, several = _classes_NK(model, x_NHWC, classes)
    _checks.count("steps", steps)
    _checks.count("chunk", chunk)
    baseline_NHWC = _baseline(model, x_NHWC, baseline_NHWC)
    return _unstack(_integrated_gradients(model, params, x_NHWC, classes_NK, baseline_NHWC, steps, chunk), several)


@functools.partial(jax.jit, static_argnames=("model", "steps", "chunk"))
def _integrated_gradients(model, params, x_NHWC, classes_NK, baseline_NHWC, steps, chunk):
    alphas = (jnp.arange(steps, dtype=x_NHWC.dtype) + 0.5) / steps
    path = lambda a: _gradients(model, params, baseline_NHWC + a * (x_NHWC - baseline_NHWC), classes_NK, "gradient")
    mean_grads_NKHWC = jax.lax.map(path, alphas, batch_size=chunk).mean(axis=0)
    return (x_NHWC - baseline_NHWC)[:, None] * mean_grads_NKHWC


METHODS = ("gradient", "guided", "deconvnet", "smoothgrad", "integrated_gradients")


def method_maps(model: Model, params: Params, x_NHWC, classes, methods=METHODS,
                key: jax.Array | None = None) -> dict[str, jax.Array]:
    """Each method's map (:func:`to_map` of its attribution) with default settings.

    ``key`` draws SmoothGrad's noise (default ``jax.random.key(0)``).
    """
    for method in methods:
        _checks.choice("saliency method", method, METHODS)
    key = jax.random.key(0) if key is None else key
    attribution = {
        "smoothgrad": lambda: smoothgrad(model, params, x_NHWC, classes, key),
        "integrated_gradients": lambda: integrated_gradients(model, params, x_NHWC, classes),
    }
    return {m: to_map(attribution[m]() if m in attribution else gradients(model, params, x_NHWC, classes, m))
            for m in methods}


def black(model: Model, like_NHWC) -> jax.Array:
    """Black images (pixels 0) in the network's input space, shaped like ``like_NHWC``."""
    return jnp.broadcast_to(model.normalize(jnp.zeros((1, 1, 1, like_NHWC.shape[-1]), jnp.float32)),
                            like_NHWC.shape)


# ---------------------------------------------------------------------------------------
# Weakly supervised localization


def largest_component(mask_HW, connectivity: int = 4) -> jax.Array:
    """The largest connected component of a boolean mask (ties: the one with the lowest
    last pixel in row-major order), as a boolean mask. Jittable and vmappable.

    Each foreground pixel starts with its own label and repeatedly takes the largest label
    among itself and its neighbours; pointer jumping (a pixel takes the label of the pixel
    its label names) shortens the propagation. The fixed point labels every component by
    its last pixel.
    """
    _checks.choice("connectivity", connectivity, CONNECTIVITY)
    mask_HW = jnp.asarray(mask_HW, bool)
    h, w = mask_HW.shape
    shifts = [(1, 0), (-1, 0), (0, 1), (0, -1)]
    if connectivity == 8:
        shifts += [(1, 1), (1, -1), (-1, 1), (-1, -1)]
    labels0_HW = jnp.where(mask_HW, jnp.arange(1, h * w + 1).reshape(h, w), 0)

    def neighbour(labels_HW, dy, dx):
        padded = jnp.pad(labels_HW, 1)
        return padded[1 + dy:1 + dy + h, 1 + dx:1 + dx + w]

    def spread(state):
        labels_HW, _ = state
        best = labels_HW
        for dy, dx in shifts:
            best = jnp.maximum(best, neighbour(labels_HW, dy, dx))
        jumped = jnp.concatenate([jnp.zeros(1, best.dtype), best.ravel()])[best]
        new = jnp.where(mask_HW, jnp.maximum(best, jumped), 0)
        return new, jnp.any(new != labels_HW)

    labels_HW, _ = jax.lax.while_loop(lambda s: s[1], spread, (labels0_HW, jnp.any(mask_HW)))
    sizes = jnp.zeros(h * w + 1, jnp.int32).at[labels_HW.ravel()].add(1).at[0].set(0)
    return mask_HW & (labels_HW == jnp.argmax(sizes))


def bounding_box(mask_HW) -> jax.Array:
    """``(top, left, height, width)`` of a mask's foreground (zeros for an empty mask)."""
    mask_HW = jnp.asarray(mask_HW, bool)
    rows, cols = mask_HW.any(axis=1), mask_HW.any(axis=0)
    top, left = jnp.argmax(rows), jnp.argmax(cols)
    height = jnp.where(rows.any(), rows.size - jnp.argmax(rows[::-1]) - top, 0)
    width = jnp.where(cols.any(), cols.size - jnp.argmax(cols[::-1]) - left, 0)
    return jnp.stack([top, left, height, width]).astype(jnp.int32)


@functools.partial(jax.jit, static_argnames="connectivity")
def localization_box(map_HW, quantile: float = 0.95, connectivity: int = 4) -> jax.Array:
    """Simonyan Sec. 3.2 without GraphCut: the box of the largest connected component of
    the pixels at or above the map's ``quantile``. Returns ``(top, left, height, width)``;
    vmap for a batch of maps."""
    foreground_HW = map_HW >= jnp.quantile(map_HW, quantile)
    return bounding_box(largest_component(foreground_HW, connectivity))


# ---------------------------------------------------------------------------------------
# Faithfulness


@functools.partial(jax.tree_util.register_dataclass, data_fields=["fractions", "probabilities", "area"],
                   meta_fields=[])
@dataclasses.dataclass(frozen=True)
class Curves:
    """A deletion or insertion curve per image.

    ``fractions``: ``(S+1,)`` share of pixels removed (deletion) or added (insertion);
    ``probabilities``: ``(N, S+1)`` softmax probability of each image's class;
    ``area``: ``(N,)`` area under the curve over ``fractions`` in [0, 1] (trapezoids).
    """

    fractions: jax.Array
    probabilities: jax.Array
    area: jax.Array


def saliency_ranks(map_HW) -> jax.Array:
    """Each pixel's place in descending saliency order (0 = most salient); ties keep
    row-major order."""
    order = jnp.argsort(-map_HW.ravel(), stable=True)
    return jnp.zeros(map_HW.size, jnp.int32).at[order].set(jnp.arange(map_HW.size, dtype=jnp.int32)).reshape(
        map_HW.shape)


def deletion(model: Model, params: Params, x_NHWC, maps_NHW, classes_N, steps: int = 28, baseline_NHWC=None,
             chunk: int = 8) -> Curves:
    """Remove pixels (set them to the baseline, default black) in saliency order.

    Step ``s`` of ``steps`` removes the ``round(s * H * W / steps)`` most salient pixels
    (all channels). ``chunk`` steps go through the network at once.
    """
    return _curves(model, params, x_NHWC, maps_NHW, classes_N, steps, baseline_NHWC, chunk, insert=False)


def insertion(model: Model, params: Params, x_NHWC, maps_NHW, classes_N, steps: int = 28, baseline_NHWC=None,
              chunk: int = 8) -> Curves:
    """Add pixels of the image to the baseline (default black) in saliency order; see :func:`deletion`."""
    return _curves(model, params, x_NHWC, maps_NHW, classes_N, steps, baseline_NHWC, chunk, insert=True)


def _baseline(model: Model, x_NHWC, baseline):
    """The baseline broadcast to the images' shape (default: black), checked like images."""
    if baseline is None:
        return black(model, x_NHWC)
    try:
        baseline = jnp.broadcast_to(baseline, x_NHWC.shape)
    except ValueError:
        raise ValueError(f"baseline must broadcast to the images' shape {tuple(x_NHWC.shape)} (one image, or one "
                         f"per image), got shape {np.shape(baseline)}") from None
    _checks.images(baseline, model.input_shape, what="baseline")
    return baseline


def _curves(model, params, x_NHWC, maps_NHW, classes_N, steps, baseline_NHWC, chunk, insert):
    classes_NK, several = _classes_NK(model, x_NHWC, classes_N)
    if several:
        raise ValueError(f"deletion and insertion take one class per image, shape (N,), got {np.shape(classes_N)}")
    if np.shape(maps_NHW) != x_NHWC.shape[:3]:
        raise ValueError(f"maps must have shape {x_NHWC.shape[:3]} (one H x W map per image), "
                         f"got {np.shape(maps_NHW)}")
    _checks.finite(maps_NHW, "maps")
    _checks.count("steps", steps)
    _checks.count("chunk", chunk)
    baseline_NHWC = _baseline(model, x_NHWC, baseline_NHWC)
    return _curves_jit(model, params, x_NHWC, jnp.asarray(maps_NHW), classes_NK[:, 0], baseline_NHWC, steps, chunk,
                       insert)


@functools.partial(jax.jit, static_argnames=("model", "steps", "chunk", "insert"))
def _curves_jit(model, params, x_NHWC, maps_NHW, classes_N, baseline_NHWC, steps, chunk, insert):
    ranks_NHW1 = jax.vmap(saliency_ranks)(maps_NHW)[..., None]
    pixels = maps_NHW.shape[1] * maps_NHW.shape[2]
    counts_S = jnp.round(jnp.arange(steps + 1) * pixels / steps).astype(jnp.int32)
    first, then = (baseline_NHWC, x_NHWC) if insert else (x_NHWC, baseline_NHWC)

    def probabilities(count):
        changed = jnp.where(ranks_NHW1 < count, then, first)
        logits_NC = model.apply(params, changed)[0]
        return jnp.take_along_axis(jax.nn.softmax(logits_NC), classes_N[:, None], axis=1)[:, 0]

    probs_NS = jax.lax.map(probabilities, counts_S, batch_size=chunk).T
    fractions_S = counts_S / pixels
    area_N = jnp.sum((probs_NS[:, 1:] + probs_NS[:, :-1]) / 2 * jnp.diff(fractions_S)[None], axis=1)
    return Curves(fractions_S, probs_NS, area_N)
