"""Images made by gradient descent on the input: class models and feature inversion.

One loop, :func:`optimize`, with pluggable regularizers, serves both:

- class models (Simonyan, Vedaldi & Zisserman, arXiv 1312.6034, Sec. 2): maximize the
  unnormalized class score ``S_c(I) - l2 * ||I||^2`` from the zero image (the mean image,
  added back for display), optionally with the regularizers of Yosinski et al.,
  "Understanding Neural Networks Through Deep Visualization" (2015), Sec. 3: L2 decay,
  Gaussian blur every few steps, and zeroing the pixels of small norm or small
  contribution (percentiles), applied after each step in that order; optional jitter;
- feature inversion (Mahendran & Vedaldi, CVPR 2015, Sec. 2-3): minimize
  ``||Phi(x) - Phi_0||^2 / ||Phi_0||^2`` plus an alpha-norm and a total-variation
  regularizer, by gradient descent with momentum and a step schedule.

Units. The papers' constants are for pixels in 0-255 with the mean subtracted. The loop
therefore works on ``u = 255 * std * x`` (``x`` the normalized network input, per
channel), which *is* that scale (``255 * (pixels - mean)``): every learning rate, penalty
weight and bound in :class:`Settings` means what it means in the papers, for any model's
normalization. Results come back as normalized inputs ``x``; ``model.denormalize`` adds
the mean back for display.

All items of a run (classes, or images to invert) are optimized in one vmapped, jitted
program. An item whose loss or image stops being finite is frozen at its last finite
image; a warning names the item and the step.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxvis import _checks
from jaxvis.models import Model, Params

SCHEDULES = ("constant", "ramp", "steps")
PIXEL_SCALE = 255.0
ALPHA_BOUND = 128.0  # Mahendran & Vedaldi's B: a mean-subtracted 0-255 pixel stays within about +-B
TV_BOUND = ALPHA_BOUND / 6.5  # their V = B / 6.5, the typical difference of neighbouring pixels


@dataclasses.dataclass(frozen=True)
class Settings:
    """The loop and its regularizers, in the papers' units (pixels 0-255, mean subtracted).

    Loop: ``steps``; ``learning_rate`` shaped by ``schedule``: ``constant``, ``ramp``
    (linear from 0 up to ``learning_rate`` over the run) or ``steps`` (Mahendran & Vedaldi:
    x1 for the first quarter, x0.1 for the next half, x0.01 for the last quarter);
    ``momentum`` (0: plain gradient steps, as Simonyan and Yosinski).

    Penalties added to the loss (on ``u``, the image in paper units, of size H x W):
    ``l2 * ||u||^2`` (Simonyan); ``alpha_weight * sum |u / B|^alpha / (H W)`` and
    ``tv_weight * sum ((u[i,j+1]-u[i,j])^2 + (u[i+1,j]-u[i,j])^2)^(beta/2) / (H W V^beta)``
    with ``B = 128``, ``V = B / 6.5`` (Mahendran & Vedaldi's normalization).

    Projections after each step, in Yosinski et al.'s order: ``u *= 1 - decay``; a
    Gaussian blur of standard deviation ``blur_width`` pixels every ``blur_every`` steps;
    zero the pixels whose norm over channels is below the ``norm_percentile``-th percentile;
    zero those whose contribution ``|sum_c u * grad|`` is below the
    ``contribution_percentile``-th; with ``clip_pixels``, clip to the valid pixel range.

    ``jitter``: the objective sees the image rolled by up to this many pixels, drawn anew
    each step.
    """

    steps: int
    learning_rate: float
    schedule: str = "constant"
    momentum: float = 0.0
    l2: float = 0.0
    alpha: float = 6.0
    alpha_weight: float = 0.0
    beta: float = 2.0
    tv_weight: float = 0.0
    decay: float = 0.0
    blur_width: float = 0.0
    blur_every: int = 0
    norm_percentile: float = 0.0
    contribution_percentile: float = 0.0
    jitter: int = 0
    clip_pixels: bool = False

    def __post_init__(self):
        _checks.count("steps", self.steps)
        _checks.positive("learning_rate", self.learning_rate)
        _checks.choice("schedule", self.schedule, SCHEDULES)
        if not 0 <= self.momentum < 1:
            raise ValueError(f"momentum must be in [0, 1), got {self.momentum!r}")
        for name in ("l2", "alpha_weight", "tv_weight", "blur_width", "blur_every", "jitter"):
            _checks.positive(name, getattr(self, name), strict=False)
        if not 0 <= self.decay < 1:
            raise ValueError(f"decay must be in [0, 1), got {self.decay!r}")
        for name in ("norm_percentile", "contribution_percentile"):
            if not 0 <= getattr(self, name) <= 100:
                raise ValueError(f"{name} must be in [0, 100], got {getattr(self, name)!r}")
        if self.alpha < 1 or self.beta < 1:
            raise ValueError(f"alpha and beta must be >= 1, got alpha={self.alpha!r}, beta={self.beta!r}")

    def learning_rates(self) -> np.ndarray:
        """The step size at each of the ``steps`` steps."""
        lr, n = self.learning_rate, self.steps
        schedule = {
            "constant": optax.constant_schedule(lr),
            "ramp": optax.linear_schedule(lr / n, lr, n - 1),
            "steps": optax.piecewise_constant_schedule(lr, {n // 4: 0.1, (3 * n) // 4: 0.1}),
        }[self.schedule]
        return np.asarray(jax.vmap(schedule)(jnp.arange(n)), np.float32)


# Yosinski et al. Table 1: their constants, "ramp to" read as a linear ramp. Their learning
# rates suit CaffeNet's gradients: on jaxvis's MNIST network presets 1-3 barely move the
# image (results/saliency/README.md; scale learning_rate by about 100 there). "simonyan" and
# "mahendran" are jaxvis's choices, tuned on that network, for what those papers leave open
# (lambda, step size, iterations, regularizer weights). Mahendran & Vedaldi's regularizers
# are means over pixels, so their gradients shrink with H x W: scale that learning rate
# with the image area for larger inputs.
PRESETS: dict[str, Settings] = {
    "simonyan": Settings(steps=50, learning_rate=3e4, l2=1e-6),
    "yosinski1": Settings(steps=500, learning_rate=100.0, schedule="ramp", blur_width=0.5, blur_every=4,
                          norm_percentile=50.0),
    "yosinski2": Settings(steps=750, learning_rate=100.0, decay=0.3, norm_percentile=20.0),
    "yosinski3": Settings(steps=1000, learning_rate=100.0, decay=1e-4, blur_width=1.0, blur_every=4),
    "yosinski4": Settings(steps=1000, learning_rate=1e8, schedule="ramp", blur_width=0.5, blur_every=4,
                          contribution_percentile=90.0),
    "mahendran": Settings(steps=400, learning_rate=1e5, schedule="steps", momentum=0.9, alpha_weight=1e-3,
                          tv_weight=1e-2),
}
YOSINSKI = ("yosinski1", "yosinski2", "yosinski3", "yosinski4")


def settings(preset: str | Settings, **overrides) -> Settings:
    """A named preset (or given settings) with some fields replaced."""
    if isinstance(preset, str):
        _checks.choice("preset", preset, PRESETS)
        preset = PRESETS[preset]
    return dataclasses.replace(preset, **overrides)


# ---------------------------------------------------------------------------------------
# Objectives: frozen dataclasses, so that jit caches the compiled loop per objective


@dataclasses.dataclass(frozen=True)
class ClassScore:
    """Minus the unnormalized score of class ``target`` (Simonyan Sec. 2)."""

    model: Model

    def __call__(self, params: Params, x_HWC, target) -> jax.Array:
        return -self.model.apply(params, x_HWC[None])[0][0, target]


@dataclasses.dataclass(frozen=True)
class FeatureMatch:
    """``||Phi(x) - Phi_0||^2 / ||Phi_0||^2`` at ``layer`` (Mahendran & Vedaldi eq. 1);
    ``target`` is ``Phi_0``."""

    model: Model
    layer: str

    def __call__(self, params: Params, x_HWC, target) -> jax.Array:
        features = self.model.apply(params, x_HWC[None], until=self.layer)[0][0]
        return jnp.sum(jnp.square(features - target)) / jnp.sum(jnp.square(target))


# ---------------------------------------------------------------------------------------
# Regularizers, each on one image u_HWC in paper units


def alpha_norm(u_HWC, alpha: float) -> jax.Array:
    """``sum |u / B|^alpha / (H W)``."""
    h, w, _ = u_HWC.shape
    return jnp.sum(jnp.abs(u_HWC / ALPHA_BOUND) ** alpha) / (h * w)


def total_variation(u_HWC, beta: float) -> jax.Array:
    """``sum_ij ((u[i,j+1]-u[i,j])^2 + (u[i+1,j]-u[i,j])^2)^(beta/2) / (H W V^beta)``
    over the pixels that have both neighbours; the power's gradient at 0 is taken as 0."""
    h, w, _ = u_HWC.shape
    right = u_HWC[:-1, 1:] - u_HWC[:-1, :-1]
    down = u_HWC[1:, :-1] - u_HWC[:-1, :-1]
    squared = jnp.square(right) + jnp.square(down)
    positive = squared > 0
    powered = jnp.where(positive, jnp.where(positive, squared, 1.0) ** (beta / 2), 0.0)
    return jnp.sum(powered) / (h * w * TV_BOUND ** beta)


def gaussian_kernel(width: float) -> np.ndarray:
    """A normalized 1-D Gaussian of standard deviation ``width``, radius ``ceil(3 width)``."""
    radius = max(1, math.ceil(3 * width))
    taps = np.exp(-0.5 * (np.arange(-radius, radius + 1) / width) ** 2)
    return (taps / taps.sum()).astype(np.float32)


def blur(u_HWC, width: float) -> jax.Array:
    """Separable Gaussian blur per channel; pixels outside the image count as 0 (the mean)."""
    kernel = gaussian_kernel(width)
    radius = len(kernel) // 2
    h, w, _ = u_HWC.shape
    padded = jnp.pad(u_HWC, ((radius, radius), (0, 0), (0, 0)))
    u_HWC = sum(float(k) * padded[i:i + h] for i, k in enumerate(kernel))
    padded = jnp.pad(u_HWC, ((0, 0), (radius, radius), (0, 0)))
    return sum(float(k) * padded[:, i:i + w] for i, k in enumerate(kernel))


def clip_below_percentile(u_HWC, strength_HW, percentile: float) -> jax.Array:
    """Zero the pixels (all channels) whose ``strength`` is below its ``percentile``."""
    keep_HW1 = (strength_HW >= jnp.percentile(strength_HW, percentile))[..., None]
    return jnp.where(keep_HW1, u_HWC, 0.0)


def penalty(s: Settings, u_HWC) -> jax.Array:
    """The differentiable regularizers of ``s`` at one image."""
    total = s.l2 * jnp.sum(jnp.square(u_HWC))
    if s.alpha_weight:
        total += s.alpha_weight * alpha_norm(u_HWC, s.alpha)
    if s.tv_weight:
        total += s.tv_weight * total_variation(u_HWC, s.beta)
    return total


def project(s: Settings, u_HWC, grad_HWC, step, low_11C, high_11C) -> jax.Array:
    """Yosinski et al.'s regularization ``r``, after each step, in their order."""
    if s.decay:
        u_HWC = (1.0 - s.decay) * u_HWC
    if s.blur_width and s.blur_every:
        u_HWC = jnp.where((step + 1) % s.blur_every == 0, blur(u_HWC, s.blur_width), u_HWC)
    if s.norm_percentile:
        u_HWC = clip_below_percentile(u_HWC, jnp.linalg.norm(u_HWC, axis=-1), s.norm_percentile)
    if s.contribution_percentile:
        contribution_HW = jnp.abs(jnp.sum(u_HWC * grad_HWC, axis=-1))
        u_HWC = clip_below_percentile(u_HWC, contribution_HW, s.contribution_percentile)
    if s.clip_pixels:
        u_HWC = jnp.clip(u_HWC, low_11C, high_11C)
    return u_HWC


# ---------------------------------------------------------------------------------------
# The loop


@functools.partial(jax.tree_util.register_dataclass, data_fields=["images", "losses", "stopped_at"],
                   meta_fields=[])
@dataclasses.dataclass(frozen=True)
class Synthesis:
    """What :func:`optimize` made.

    ``images``: ``(N, H, W, C)`` normalized network inputs; ``losses``: ``(steps, N)`` the
    objective plus penalties before each step (NaN once an item stopped); ``stopped_at``:
    ``(N,)`` the step at which an item met a non-finite value, -1 if it never did.
    """

    images: jax.Array
    losses: jax.Array
    stopped_at: jax.Array


def paper_scale(model: Model) -> jax.Array:
    """``255 * std`` per channel, shaped ``(1, 1, C)``: a normalized input times this is in
    the papers' units."""
    return PIXEL_SCALE * jnp.asarray(model.std, jnp.float32).reshape(1, 1, -1)


def optimize(objective, params: Params, x0_NHWC, targets, s: Settings, key: jax.Array | None = None) -> Synthesis:
    """Minimize ``objective(params, x_HWC, target) + penalties`` for each item, in one program.

    Args:
      objective: a hashable callable, e.g. :class:`ClassScore` or :class:`FeatureMatch`,
        with a ``model`` field.
      params: the network's parameters.
      x0_NHWC: the starting images, normalized.
      targets: one target per item (a pytree with a leading axis of size N).
      s: the loop and its regularizers.
      key: draws the jitter (default ``jax.random.key(0)``).
    """
    model = objective.model
    _checks.images(x0_NHWC, model.input_shape, what="starting images")
    key = jax.random.key(0) if key is None else key
    run = _optimize(objective, s, params, jnp.asarray(x0_NHWC, jnp.float32), targets,
                    jnp.asarray(s.learning_rates()), key)
    for item, step in enumerate(np.asarray(run.stopped_at)):
        if step >= 0:
            warnings.warn(f"item {item}: the loss or the image became NaN or infinite at step {step} of {s.steps}; "
                          "stopped there and kept its last finite image (lower learning_rate or add a penalty)",
                          RuntimeWarning, stacklevel=2)
    return run


@functools.partial(jax.jit, static_argnames=("objective", "s"))
def _optimize(objective, s: Settings, params, x0_NHWC, targets, learning_rates_S, key) -> Synthesis:
    model = objective.model
    scale_11C = paper_scale(model)
    low_11C = PIXEL_SCALE * (0.0 - jnp.asarray(model.mean, jnp.float32).reshape(1, 1, -1))
    high_11C = PIXEL_SCALE + low_11C

    def loss(u_HWC, target, key):
        seen_HWC = u_HWC
        if s.jitter:
            seen_HWC = jnp.roll(u_HWC, jax.random.randint(key, (2,), -s.jitter, s.jitter + 1), axis=(0, 1))
        return objective(params, seen_HWC / scale_11C, target) + penalty(s, u_HWC)

    def item_step(u_HWC, velocity_HWC, stopped_at, target, step, lr, item_key):
        value, grad_HWC = jax.value_and_grad(loss)(u_HWC, target, jax.random.fold_in(item_key, step))
        velocity_new = s.momentum * velocity_HWC - lr * grad_HWC
        u_new = project(s, u_HWC + velocity_new, grad_HWC, step, low_11C, high_11C)
        finite = jnp.isfinite(value) & jnp.all(jnp.isfinite(u_new))
        running = stopped_at < 0
        advance = running & finite
        stopped_at = jnp.where(running & ~finite, step, stopped_at)
        return (jnp.where(advance, u_new, u_HWC), jnp.where(advance, velocity_new, velocity_HWC), stopped_at,
                jnp.where(advance, value, jnp.nan))

    n = x0_NHWC.shape[0]
    item_keys = jax.random.split(key, n)
    batched_step = jax.vmap(item_step, in_axes=(0, 0, 0, 0, None, None, 0))

    def body(carry, inputs):
        u, velocity, stopped_at = carry
        step, lr = inputs
        u, velocity, stopped_at, value = batched_step(u, velocity, stopped_at, targets, step, lr, item_keys)
        return (u, velocity, stopped_at), value

    u0 = x0_NHWC * scale_11C[None]
    start = (u0, jnp.zeros_like(u0), jnp.full((n,), -1, jnp.int32))
    steps = jnp.arange(learning_rates_S.shape[0])
    (u, _, stopped_at), losses_SN = jax.lax.scan(body, start, (steps, learning_rates_S))
    return Synthesis(u / scale_11C[None], losses_SN, stopped_at)


# ---------------------------------------------------------------------------------------
# Class models and inversion


def class_models(model: Model, params: Params, classes=None, preset: str | Settings = "simonyan",
                 key: jax.Array | None = None, init_std: float = 0.0, **overrides) -> tuple[Synthesis, jax.Array]:
    """One image per class that the network scores highly, all classes in one program.

    Starts from the zero image (the mean: Simonyan et al. trained on zero-centred data),
    plus Gaussian noise of standard deviation ``init_std`` (paper units) if given: a
    network whose first ReLUs are all off at the mean image has a zero gradient there.

    Args:
      classes: class indices, default all ``model.num_classes``.
      preset: a name in :data:`PRESETS` (``simonyan``, ``yosinski1`` ... ``yosinski4``)
        or :class:`Settings`; ``overrides`` replace some of its fields (``l2=...``).
      key: draws the starting noise and the jitter (default ``jax.random.key(0)``).

    Returns:
      The :class:`Synthesis` and each image's softmax probability of its class.
    """
    s = settings(preset, **overrides)
    classes = np.arange(model.num_classes) if classes is None else np.atleast_1d(np.asarray(classes))
    _checks.index("class", classes, model.num_classes)
    _checks.positive("init_std", init_std, strict=False)
    init_key, loop_key = jax.random.split(jax.random.key(0) if key is None else key)
    x0 = init_std * jax.random.normal(init_key, (len(classes), *model.input_shape)) / paper_scale(model)[None]
    run = optimize(ClassScore(model), params, x0, jnp.asarray(classes, jnp.int32), s, loop_key)
    unmoved = np.flatnonzero(np.all(np.asarray(run.images == x0).reshape(len(classes), -1), axis=1))
    if unmoved.size:
        warnings.warn(f"classes {classes[unmoved].tolist()}: the image never changed; the score's gradient is "
                      "zero at the start (all first-layer ReLUs off?): start from noise with init_std > 0",
                      RuntimeWarning, stacklevel=2)
    probs_NK = jax.nn.softmax(jax.jit(model.apply)(params, run.images)[0])
    return run, probs_NK[jnp.arange(len(classes)), classes]


def invert(model: Model, params: Params, x_NHWC, layer: str, preset: str | Settings = "mahendran",
           key: jax.Array | None = None, init_std: float = 1.0, **overrides) -> tuple[Synthesis, jax.Array]:
    """Reconstruct each image from its code at ``layer`` (Mahendran & Vedaldi).

    Starts from Gaussian noise of standard deviation ``init_std`` (paper units) drawn
    from ``key``.

    Returns:
      The :class:`Synthesis` and the relative feature error ``||Phi(x) - Phi_0|| / ||Phi_0||``
      each reconstruction reached.
    """
    s = settings(preset, **overrides)
    _checks.images(x_NHWC, model.input_shape)
    model.check_layer(layer)
    key = jax.random.key(0) if key is None else key
    init_key, loop_key = jax.random.split(key)
    targets = jax.jit(model.apply, static_argnames="until")(params, x_NHWC, until=layer)[0]
    x0 = init_std * jax.random.normal(init_key, x_NHWC.shape) / paper_scale(model)[None]
    run = optimize(FeatureMatch(model, layer), params, x0, targets, s, loop_key)
    return run, feature_error(model, params, run.images, targets, layer)


def feature_error(model: Model, params: Params, x_NHWC, targets, layer: str) -> jax.Array:
    """``||Phi(x) - Phi_0|| / ||Phi_0||`` per image at ``layer``."""
    features = jax.jit(model.apply, static_argnames="until")(params, x_NHWC, until=layer)[0]
    axes = tuple(range(1, features.ndim))
    return jnp.sqrt(jnp.sum(jnp.square(features - targets), axes) / jnp.sum(jnp.square(targets), axes))
