"""Saliency: which pixels a class score depends on, where the object is, and how faithful a map is.

- :func:`gradients` and :func:`saliency`: Simonyan, Vedaldi & Zisserman (arXiv 1312.6034)
  Sec. 3.1, the image-specific class saliency map ``M_ij = max_c |dS_c/dI_ijc|`` with
  ``S_c`` the unnormalized class score (the logit), for many images and classes in one
  call: one forward pass per batch, one vmapped backward pass per class. The ReLU rule
  picks the method (Simonyan Sec. 4; Springenberg et al.): ``gradient`` (saliency),
  ``guided`` (guided backpropagation) or ``deconvnet`` (Zeiler & Fergus).
- :func:`smoothgrad` (Smilkov et al. 2017) and :func:`integrated_gradients`
  (Sundararajan et al. 2017), as wrappers of :func:`gradients`.
- :func:`grad_cam` and :func:`guided_grad_cam`: Selvaraju et al. 2017 (arXiv 1610.02391)
  Sec. 3, ``ReLU(sum_k alpha_k^c A^k)`` with ``alpha_k^c`` the spatial mean of ``dS_c/dA^k``
  at a convolutional layer's maps ``A``, and Sec. 3.2's guided Grad-CAM, guided
  backpropagation times the map upsampled to the input (:func:`interpolate`, PyTorch's
  and so Captum's resampling). One forward pass serves every class; each class's backward
  pass runs from the logits down to ``A`` only.
- :func:`localization_box`: Simonyan Sec. 3.2's weakly supervised localization, with the
  GraphCut segmentation replaced by a threshold at a quantile of the map; the box is
  that of the largest connected foreground component (:func:`largest_component`).
- :func:`deletion` and :func:`insertion`: faithfulness curves (Petsiuk et al. 2018, RISE
  Sec. 4.1): pixels removed from the image (set to a baseline) or added to the baseline
  in saliency order, the class probability tracked; the area under each curve summarizes
  it (deletion: lower is more faithful; insertion: higher).

Classes are given as one index for all images, one per image ``(N,)``, several per
image ``(N, K)``, or ``"all"`` (every class, as ``(N, num_classes)``); results carry the
same leading axes.
"""

from __future__ import annotations

import dataclasses
import functools
import math

import jax
import jax.numpy as jnp
import numpy as np

from jaxvis import _checks
from jaxvis.models import Model, Params

CONNECTIVITY = (4, 8)


def _classes_NK(model: Model, x_NHWC, classes) -> tuple[jax.Array, bool]:
    """Class indices as ``(N, K)`` and whether the caller gave a K axis."""
    _checks.images(x_NHWC, model.input_shape)
    output = model.shapes[model.names[-1]]
    if len(output) != 1:
        raise ValueError(f"{model.name} must end in class scores (a flat output), its output has shape {output}")
    n = x_NHWC.shape[0]
    if isinstance(classes, str):
        _checks.choice("classes", classes, ("all",))
        return jnp.broadcast_to(jnp.arange(model.num_classes), (n, model.num_classes)), True
    _checks.index("class", classes, model.num_classes)
    classes = jnp.asarray(classes)
    if classes.ndim == 0:
        return jnp.broadcast_to(classes, (n, 1)), False
    if classes.ndim > 2 or classes.shape[0] != n:
        raise ValueError(f"classes must be one index, shape (N,) or shape (N, K) with N = {n} images, "
                         f"got shape {classes.shape}")
    if classes.ndim == 2 and classes.shape[1] == 0:
        raise ValueError(f"classes of shape (N, K) need at least one class per image (K >= 1), "
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
    if np.ndim(attributions_HWC) < 1:
        raise ValueError(f"attributions must have a channel axis (..., H, W, C), got shape {np.shape(attributions_HWC)}")
    return jnp.abs(attributions_HWC).max(axis=-1)


def saliency(model: Model, params: Params, x_NHWC, classes, rule: str = "gradient") -> jax.Array:
    """Image-specific class saliency ``max_c |dS_c/dI|``: ``(N, H, W)`` or ``(N, K, H, W)``."""
    return to_map(gradients(model, params, x_NHWC, classes, rule))


def smoothgrad(model: Model, params: Params, x_NHWC, classes, key: jax.Array, samples: int = 50,
               noise: float = 0.15, rule: str = "gradient", memory_budget: float = 1e9) -> jax.Array:
    """SmoothGrad: :func:`gradients` averaged over noisy copies of each image.

    The noise is Gaussian with standard deviation ``noise * (max(x) - min(x))`` per image
    (Smilkov et al.'s noise level); copy ``s`` of the batch draws it with
    ``jax.random.normal(jax.random.split(key, samples)[s], x_NHWC.shape)``. As many noisy
    copies as ``memory_budget`` bytes hold go through the network at once (estimated: each
    copy keeps every layer's output, and per class a cotangent of every layer and of the
    input; the default's 1e9 holds all 50 of VGG-16 at 64x64, one image and class).
    Shapes as :func:`gradients`.
    """
    classes_NK, several = _classes_NK(model, x_NHWC, classes)
    x_NHWC = jnp.asarray(x_NHWC)
    _checks.prng_key("key", key)
    _checks.count("samples", samples)
    _checks.positive("noise", noise, strict=False)
    chunk = _fit(memory_budget, _sample_bytes(model, x_NHWC, classes_NK.shape[1]), samples,
                 f"one noisy copy: its forward and backward passes over {x_NHWC.shape[0]} image(s) and "
                 f"{classes_NK.shape[1]} class(es) need")
    run = lambda keys_S, weights_S: _smoothgrad(model, params, x_NHWC, classes_NK, keys_S, weights_S, noise, rule)
    weights_S = jnp.full(samples, 1 / samples, x_NHWC.dtype)
    return _unstack(_sum_in_chunks(run, jax.random.split(key, samples), weights_S, chunk), several)


@functools.partial(jax.jit, static_argnames=("model", "rule"))
def _smoothgrad(model, params, x_NHWC, classes_NK, keys_S, weights_S, noise, rule):
    """``sum_s weights_S[s] * gradients`` of noisy copy ``s``: ``(N, K, H, W, C)``."""
    spread_N111 = (x_NHWC.max(axis=(1, 2, 3)) - x_NHWC.min(axis=(1, 2, 3))).reshape(-1, 1, 1, 1)

    def noisy_gradients(k):
        x = x_NHWC + noise * spread_N111 * jax.random.normal(k, x_NHWC.shape, x_NHWC.dtype)
        return _gradients(model, params, x, classes_NK, rule)

    return jnp.tensordot(weights_S, jax.vmap(noisy_gradients)(keys_S), axes=1)


def integrated_gradients(model: Model, params: Params, x_NHWC, classes, baseline_NHWC=None, steps: int = 64,
                         memory_budget: float = 1e9) -> jax.Array:
    """Integrated gradients ``(x - x') * mean over the path of dS_c/dI`` (midpoint rule).

    Completeness: the attributions of an image sum to ``S_c(x) - S_c(x')`` up to the
    quadrature error of ``steps`` points. The default baseline ``x'`` is the black image
    (pixels 0, normalized). As many steps as ``memory_budget`` bytes hold go through the
    network at once (estimated as :func:`smoothgrad`'s noisy copies). Shapes as
    :func:`gradients`.
    """
    classes_NK, several = _classes_NK(model, x_NHWC, classes)
    x_NHWC = jnp.asarray(x_NHWC)
    _checks.count("steps", steps)
    chunk = _fit(memory_budget, _sample_bytes(model, x_NHWC, classes_NK.shape[1]), steps,
                 f"one step: its forward and backward passes over {x_NHWC.shape[0]} image(s) and "
                 f"{classes_NK.shape[1]} class(es) need")
    baseline_NHWC = _baseline(model, x_NHWC, baseline_NHWC)
    alphas_S = (jnp.arange(steps, dtype=x_NHWC.dtype) + 0.5) / steps
    run = lambda a_S, weights_S: _integrated_gradients(model, params, x_NHWC, classes_NK, baseline_NHWC, a_S,
                                                       weights_S)
    mean_grads_NKHWC = _sum_in_chunks(run, alphas_S, jnp.full(steps, 1 / steps, x_NHWC.dtype), chunk)
    return _unstack((x_NHWC - baseline_NHWC)[:, None] * mean_grads_NKHWC, several)


@functools.partial(jax.jit, static_argnames="model")
def _integrated_gradients(model, params, x_NHWC, classes_NK, baseline_NHWC, alphas_S, weights_S):
    """``sum_s weights_S[s] * gradients`` at ``baseline + alphas_S[s] * (x - baseline)``."""
    path = lambda a: _gradients(model, params, baseline_NHWC + a * (x_NHWC - baseline_NHWC), classes_NK, "gradient")
    return jnp.tensordot(weights_S, jax.vmap(path)(alphas_S), axes=1)


def _sample_bytes(model: Model, x_NHWC, num_classes: int) -> float:
    """Bytes of one sample of :func:`smoothgrad` or :func:`integrated_gradients`, estimated:
    per image, the forward pass keeps every layer's output, and each of ``num_classes``
    backward passes holds a cotangent of every layer and of the input."""
    layers = sum(math.prod(model.shapes[name]) for name in model.names)
    floats = layers + num_classes * (layers + math.prod(model.input_shape))
    return float(floats * x_NHWC.shape[0] * np.dtype(x_NHWC.dtype).itemsize)


def _fit(memory_budget, item_bytes: float, items: int, what: str) -> int:
    """How many of ``items`` fit in ``memory_budget`` bytes at ``item_bytes`` each; when
    not even one fits, a ``ValueError`` says ``what`` one item needs."""
    if isinstance(memory_budget, bool) or not isinstance(memory_budget, (int, float, np.number)) or not np.isfinite(
            memory_budget):
        raise ValueError(f"memory_budget must be a finite number of bytes, got {memory_budget!r}")
    _checks.positive("memory_budget", memory_budget)
    if item_bytes > memory_budget:
        raise ValueError(f"memory_budget={memory_budget:.3g} bytes is too small for {what} about "
                         f"{item_bytes:.3g} bytes")
    return int(min(items, memory_budget // item_bytes))


def _sum_in_chunks(run, inputs_S, weights_S, most: int):
    """``run(inputs, weights)`` over consecutive chunks of at most ``most`` samples, summed.

    Each chunk is one call of a vmapped program rather than a step of ``lax.map``:
    XLA:CPU transposes convolutions 3-5x slower inside a loop body. The chunks are made
    equal (the fewest that hold ``most`` each; the last padded with repeated inputs of
    weight 0) so that one program is compiled.
    """
    samples = weights_S.shape[0]
    count = -(-samples // most)
    size = -(-samples // count)
    pad = count * size - samples  # < count <= samples
    inputs_S = jnp.concatenate([inputs_S, inputs_S[:pad]])
    weights_S = jnp.concatenate([weights_S, jnp.zeros(pad, weights_S.dtype)])
    total = run(inputs_S[:size], weights_S[:size])
    for start in range(size, count * size, size):
        total = total + run(inputs_S[start:start + size], weights_S[start:start + size])
    return total


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
    _checks.images(like_NHWC, model.input_shape, what="like")
    return jnp.broadcast_to(model.normalize(jnp.zeros((1, 1, 1, like_NHWC.shape[-1]), jnp.float32)),
                            like_NHWC.shape)


# ---------------------------------------------------------------------------------------
# Grad-CAM

UPSAMPLING = ("bilinear", "nearest")


def cam_layer(model: Model) -> str:
    """Grad-CAM's default layer: the output of the last convolutional stage. That is the
    last convolution with spatial maps and, in network order after it, the layers that
    keep its maps without a sliding window (batch norm, ReLU, a residual addition and its
    ReLU), up to the first pool, flatten or dense layer.

    This is the authors' choice for plain networks (their code takes ``relu5_3`` of
    VGG-16, ``relu5_4`` of VGG-19 and ``relu5`` of AlexNet; torchvision VGG-16's
    ``features[29]``) and the usual one on ResNets, the last block's output after its
    addition and ReLU (torchvision's ``model.layer4[-1]``). Models and wrapped models
    alike: it reads only layer names, shapes, receptive fields and the layers' flags.
    """
    spatial = [name for name in model.names if name in model.fields]
    convs = [name for name in spatial if model.layer(name).convolution]
    if not convs:
        raise ValueError(f"{model.name} has no convolution with spatial maps for Grad-CAM's default layer; give "
                         f"layer=, one of {spatial}")
    chosen = convs[-1]
    for name in model.names[model.names.index(chosen) + 1:]:
        if name not in model.fields or model.layer(name).windowed or model.shapes[name] != model.shapes[chosen]:
            break
        chosen = name
    return chosen


def _interpolation_matrix(size_out: int, size_in: int, mode: str) -> np.ndarray:
    """``(size_out, size_in)`` weights of PyTorch's 1-D resampling with ``align_corners=False``."""
    scale = np.float32(size_in / size_out)  # PyTorch's float32 scale, so that floors agree
    dst = np.arange(size_out)
    weights = np.zeros((size_out, size_in), np.float32)
    if mode == "nearest":  # PyTorch's legacy "nearest": source floor(i * scale), not a half-pixel centre
        weights[dst, np.minimum(np.floor(dst.astype(np.float32) * scale).astype(int), size_in - 1)] = 1.0
        return weights
    src = np.maximum((dst.astype(np.float32) + np.float32(0.5)) * scale - np.float32(0.5), np.float32(0.0))
    lo = np.floor(src).astype(int)
    hi = np.minimum(lo + 1, size_in - 1)
    np.add.at(weights, (dst, lo), 1 - (src - lo))
    np.add.at(weights, (dst, hi), src - lo)
    return weights


def interpolate(maps, size, mode: str = "bilinear") -> jax.Array:
    """Maps ``(..., h, w)`` resized to ``size = (H, W)`` as PyTorch's ``F.interpolate``
    resizes them with ``align_corners=False``, and so Captum's ``LayerAttribution.interpolate``.

    ``bilinear`` samples at half-pixel centres, clamped at the border; ``nearest`` takes
    source pixel ``floor(i * h / H)`` (PyTorch's ``nearest``, Captum's default, which is not
    ``jax.image.resize``'s half-pixel ``nearest`` when ``H / h`` is not an integer).
    """
    _checks.choice("upsampling mode", mode, UPSAMPLING)
    if np.ndim(maps) < 2:
        raise ValueError(f"maps must have at least two axes (..., h, w), got shape {np.shape(maps)}")
    if np.shape(size) != (2,):
        raise ValueError(f"size must be (H, W), got {size!r}")
    for side in size:
        _checks.count("size", side)
    maps = jnp.asarray(maps)
    rows = _interpolation_matrix(size[0], maps.shape[-2], mode).astype(maps.dtype)
    cols = _interpolation_matrix(size[1], maps.shape[-1], mode).astype(maps.dtype)
    return jnp.einsum("ph,...hw,qw->...pq", rows, maps, cols, precision="highest")


def grad_cam(model: Model, params: Params, x_NHWC, classes, layer: str | None = None, upsample: str | None = None,
             memory_budget: float = 2.5e8) -> jax.Array:
    """Grad-CAM (Selvaraju et al. Sec. 3): ``ReLU(sum_k alpha_k^c A^k)`` with ``alpha_k^c`` the
    spatial mean of ``dS_c/dA^k``, ``S_c`` the logit, ``A`` the maps of ``layer``.

    One forward pass serves all classes; each class's backward pass runs from the logits
    down to ``layer`` (vmapped over a chunk of classes), never to the pixels.

    Args:
      model, params: the network.
      x_NHWC: normalized images.
      classes: one class for all images, ``(N,)``, ``(N, K)`` or ``"all"``.
      layer: a layer with spatial maps (default :func:`cam_layer`; Captum's
        ``LayerGradCam`` on the same module with ``relu_attributions=True``).
      upsample: ``None`` (maps at the layer's resolution), ``"bilinear"`` (the paper's) or
        ``"nearest"``: resized to the input by :func:`interpolate`.
      memory_budget: bytes for one chunk of classes' backward passes (estimated from the
        layer shapes); sets how many classes run at once. The default's 300 classes of
        VGG-16 at 224x224 ran 20% faster than all 1000 at once on 2 CPU cores.

    Returns:
      ``(N, h, w)``, or ``(N, K, h, w)`` for ``(N, K)`` or ``"all"`` classes; ``h, w`` are
      the layer's, or the input's when upsampled.
    """
    classes_NK, several, layer, chunk = _cam_arguments(model, x_NHWC, classes, layer, upsample, memory_budget,
                                                       guided=False)
    return _unstack(_grad_cam(model, params, x_NHWC, classes_NK, layer, upsample, chunk, guided=False), several)


def guided_grad_cam(model: Model, params: Params, x_NHWC, classes, layer: str | None = None,
                    upsample: str = "bilinear", memory_budget: float = 1e9) -> jax.Array:
    """Guided Grad-CAM (Selvaraju et al. Sec. 3.2): guided backpropagation
    (:func:`gradients` with ``rule="guided"``) times :func:`grad_cam` upsampled to the
    input, the same map for every channel, as Captum's ``GuidedGradCam``.

    The paper upsamples bilinearly (the default); Captum's default is ``"nearest"``. One
    forward pass serves the map and the guided backpropagation. Arguments as
    :func:`grad_cam` (``memory_budget``'s default holds 8 classes of VGG-16 at 224x224);
    returns ``(N, H, W, C)`` or ``(N, K, H, W, C)``.
    """
    classes_NK, several, layer, chunk = _cam_arguments(model, x_NHWC, classes, layer, upsample, memory_budget,
                                                       guided=True)
    return _unstack(_grad_cam(model, params, x_NHWC, classes_NK, layer, upsample, chunk, guided=True), several)


def _cam_arguments(model, x_NHWC, classes, layer, upsample, memory_budget, guided):
    """Checked ``(classes_NK, several, layer, classes per chunk)``."""
    classes_NK, several = _classes_NK(model, x_NHWC, classes)
    layer = cam_layer(model) if layer is None else layer
    model.check_layer(layer, spatial=True)
    _checks.choice("upsampling mode", upsample, UPSAMPLING if guided else (None, *UPSAMPLING))
    # Per class and image: a cotangent of each layer the backward pass crosses, and the map
    # at the input's size (guided: the input's cotangent holds it).
    crossed = model.names[0 if guided else model.names.index(layer):]
    at_input = math.prod(model.input_shape) if guided else math.prod(model.input_shape[:2]) if upsample else 0
    floats = sum(math.prod(model.shapes[name]) for name in crossed) + at_input
    per_class = floats * x_NHWC.shape[0] * np.dtype(x_NHWC.dtype).itemsize
    chunk = _fit(memory_budget, per_class, classes_NK.shape[1],
                 f"one class: its backward pass over {x_NHWC.shape[0]} image(s) needs")
    return classes_NK, several, layer, chunk


@functools.partial(jax.jit, static_argnames=("model", "layer", "upsample", "chunk", "guided"))
def _grad_cam(model, params, x_NHWC, classes_NK, layer, upsample, chunk, guided):
    """Grad-CAM maps ``(N, K, h, w)``, or guided Grad-CAM ``(N, K, H, W, C)``.

    ``dS/dA`` is the derivative with respect to a zero delta added at ``layer``
    (``apply``'s ``at``): the input is not differentiated, so each class's backward pass
    stops at the layer, and the same forward pass gives the maps ``A``. Guided
    backpropagation is ``jax.vjp`` of the whole network with the guided rule (its
    forward values equal the first pass's, which XLA computes once).
    """
    zeros_NHWC = jnp.zeros((x_NHWC.shape[0], *model.shapes[layer]), x_NHWC.dtype)

    def forward(delta_NHWC):
        logits_NC, trace = model.apply(params, x_NHWC, at={layer: delta_NHWC})
        return logits_NC, trace.activations[layer]

    logits_NC, pullback, maps_NHWC = jax.vjp(forward, zeros_NHWC, has_aux=True)
    if guided:
        _, guided_pullback = jax.vjp(lambda x: model.apply(params, x, rule="guided")[0], x_NHWC)

    def per_class(onehot_NC):
        (grads_NHWC,) = pullback(onehot_NC)
        cam_NHW = jax.nn.relu(jnp.einsum("nc,nhwc->nhw", grads_NHWC.mean(axis=(1, 2)), maps_NHWC))
        if upsample is not None:
            cam_NHW = interpolate(cam_NHW, x_NHWC.shape[1:3], upsample)
        if not guided:
            return cam_NHW
        (guided_NHWC,) = guided_pullback(onehot_NC)
        return guided_NHWC * cam_NHW[..., None]

    onehot_KNC = jax.nn.one_hot(classes_NK.T, logits_NC.shape[-1], dtype=logits_NC.dtype)
    # One chunk runs without a loop: XLA:CPU computes a convolution's transpose inside a
    # loop body on a slower path (guided Grad-CAM of VGG-16 at 224x224: 3-5x slower).
    if chunk >= onehot_KNC.shape[0]:
        return jnp.moveaxis(jax.vmap(per_class)(onehot_KNC), 0, 1)
    return jnp.moveaxis(jax.lax.map(per_class, onehot_KNC, batch_size=chunk), 0, 1)


# ---------------------------------------------------------------------------------------
# Weakly supervised localization


def _two_axes(what: str, array_HW) -> None:
    if np.ndim(array_HW) != 2:
        raise ValueError(f"{what} must have two axes (H, W), got shape {np.shape(array_HW)}")


def largest_component(mask_HW, connectivity: int = 4) -> jax.Array:
    """The largest connected component of a boolean mask (ties: the one with the lowest
    last pixel in row-major order), as a boolean mask. Jittable and vmappable.

    Each foreground pixel starts with its own label and repeatedly takes the largest label
    among itself and its neighbours; pointer jumping (a pixel takes the label of the pixel
    its label names) shortens the propagation. The fixed point labels every component by
    its last pixel.
    """
    _checks.choice("connectivity", connectivity, CONNECTIVITY)
    _two_axes("mask", mask_HW)
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
    _two_axes("mask", mask_HW)
    mask_HW = jnp.asarray(mask_HW, bool)
    rows, cols = mask_HW.any(axis=1), mask_HW.any(axis=0)
    top, left = jnp.argmax(rows), jnp.argmax(cols)
    height = jnp.where(rows.any(), rows.size - jnp.argmax(rows[::-1]) - top, 0)
    width = jnp.where(cols.any(), cols.size - jnp.argmax(cols[::-1]) - left, 0)
    return jnp.stack([top, left, height, width]).astype(jnp.int32)


def localization_box(map_HW, quantile: float = 0.95, connectivity: int = 4) -> jax.Array:
    """Simonyan Sec. 3.2 without GraphCut: the box of the largest connected component of
    the pixels at or above the map's ``quantile``. Returns ``(top, left, height, width)``;
    vmap for a batch of maps."""
    _two_axes("map", map_HW)
    if _checks.is_concrete(quantile) and not (np.ndim(quantile) == 0 and np.asarray(quantile).dtype.kind in "iuf"
                                              and 0 <= quantile <= 1):
        raise ValueError(f"quantile must be a number in [0, 1], got {quantile!r}")
    _checks.choice("connectivity", connectivity, CONNECTIVITY)
    return _localization_box(map_HW, quantile, connectivity)


@functools.partial(jax.jit, static_argnames="connectivity")
def _localization_box(map_HW, quantile, connectivity):
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
    _two_axes("map", map_HW)
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
