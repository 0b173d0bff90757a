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

All items of a run (classes, or images to invert) are optimized in vmapped, jitted
calls of as many items as fit a memory budget (:func:`item_bytes` estimates one item's
working set). An item whose loss or image stops being finite is frozen at its last
finite image; a warning names the item and the step.
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
from jaxvis.project import backward_bytes
from jaxvis.wrap import Wrapped

MODELS = (Model, Wrapped)  # a jaxvis tuple, or any JAX network through jaxvis.wrap

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
        _checks.annotated_fields(self)
        for field in dataclasses.fields(self):
            if field.type == "float":
                _checks.finite(getattr(self, field.name), field.name)
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
        if (self.blur_width > 0) != (self.blur_every > 0):
            raise ValueError(f"blur_width > 0 and blur_every >= 1 go together (a blur needs both), got "
                             f"blur_width={self.blur_width!r}, blur_every={self.blur_every!r}")

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
    if not isinstance(preset, Settings):
        raise ValueError(f"preset must be a name in {list(PRESETS)} or Settings, got {type(preset).__name__} {preset!r}")
    _checks.keywords("Settings", overrides, [f.name for f in dataclasses.fields(Settings)])
    return dataclasses.replace(preset, **overrides)


# ---------------------------------------------------------------------------------------
# Objectives: frozen dataclasses, so that jit caches the compiled loop per objective


@dataclasses.dataclass(frozen=True)
class ClassScore:
    """Minus the unnormalized score of class ``target`` (Simonyan Sec. 2)."""

    model: Model

    def __post_init__(self):
        if not isinstance(self.model, MODELS):
            raise ValueError(f"ClassScore needs a Model or a wrapped model (jaxvis.wrap), got "
                             f"{type(self.model).__name__}")

    def __call__(self, params: Params, x_HWC, target) -> jax.Array:
        return -self.model.apply(params, x_HWC[None])[0][0, target]


@dataclasses.dataclass(frozen=True)
class FeatureMatch:
    """``||Phi(x) - Phi_0||^2 / ||Phi_0||^2`` at ``layer`` (Mahendran & Vedaldi eq. 1);
    ``target`` is ``Phi_0``."""

    model: Model
    layer: str

    def __post_init__(self):
        if not isinstance(self.model, MODELS):
            raise ValueError(f"FeatureMatch needs a Model or a wrapped model (jaxvis.wrap), got "
                             f"{type(self.model).__name__}")
        self.model.check_layer(self.layer)

    def __call__(self, params: Params, x_HWC, target) -> jax.Array:
        features = self.model.apply(params, x_HWC[None], until=self.layer)[0][0]
        return jnp.sum(jnp.square(features - target)) / jnp.sum(jnp.square(target))


# ---------------------------------------------------------------------------------------
# Regularizers, each on one image u_HWC in paper units


def _one_image(what: str, u_HWC) -> None:
    if np.ndim(u_HWC) != 3:
        raise ValueError(f"{what} must be one image (H, W, C), got shape {np.shape(u_HWC)}")


def alpha_norm(u_HWC, alpha: float) -> jax.Array:
    """``sum |u / B|^alpha / (H W)``."""
    _one_image("u_HWC", u_HWC)
    _checks.number("alpha", alpha, 1.0)
    h, w, _ = u_HWC.shape
    return jnp.sum(jnp.abs(u_HWC / ALPHA_BOUND) ** alpha) / (h * w)


def total_variation(u_HWC, beta: float) -> jax.Array:
    """``sum_ij ((u[i,j+1]-u[i,j])^2 + (u[i+1,j]-u[i,j])^2)^(beta/2) / (H W V^beta)``
    over the pixels that have both neighbours; the power's gradient at 0 is taken as 0."""
    _one_image("u_HWC", u_HWC)
    _checks.number("beta", beta, 1.0)
    h, w, _ = u_HWC.shape
    right = u_HWC[:-1, 1:] - u_HWC[:-1, :-1]
    down = u_HWC[1:, :-1] - u_HWC[:-1, :-1]
    squared = jnp.square(right) + jnp.square(down)
    positive = squared > 0
    powered = jnp.where(positive, jnp.where(positive, squared, 1.0) ** (beta / 2), 0.0)
    return jnp.sum(powered) / (h * w * TV_BOUND ** beta)


def gaussian_kernel(width: float) -> np.ndarray:
    """A normalized 1-D Gaussian of standard deviation ``width``, radius ``ceil(3 width)``."""
    _checks.number("blur width", width, 0.0, above=True)
    radius = max(1, math.ceil(3 * width))
    taps = np.exp(-0.5 * (np.arange(-radius, radius + 1) / width) ** 2)
    return (taps / taps.sum()).astype(np.float32)


def blur(u_HWC, width: float) -> jax.Array:
    """Separable Gaussian blur per channel; pixels outside the image count as 0 (the mean)."""
    _one_image("u_HWC", u_HWC)
    kernel = gaussian_kernel(width)
    radius = len(kernel) // 2
    h, w, _ = u_HWC.shape
    padded = jnp.pad(u_HWC, ((radius, radius), (0, 0), (0, 0)))
    u_HWC = sum(float(k) * padded[i:i + h] for i, k in enumerate(kernel))
    padded = jnp.pad(u_HWC, ((0, 0), (radius, radius), (0, 0)))
    return sum(float(k) * padded[:, i:i + w] for i, k in enumerate(kernel))


def clip_below_percentile(u_HWC, strength_HW, percentile: float) -> jax.Array:
    """Zero the pixels (all channels) whose ``strength`` is below its ``percentile``."""
    _one_image("u_HWC", u_HWC)
    if np.shape(strength_HW) != np.shape(u_HWC)[:2]:
        raise ValueError(f"strength_HW must have the image's shape {np.shape(u_HWC)[:2]}, got {np.shape(strength_HW)}")
    _checks.number("percentile", percentile, 0.0, 100.0)
    keep_HW1 = (strength_HW >= jnp.percentile(strength_HW, percentile))[..., None]
    return jnp.where(keep_HW1, u_HWC, 0.0)


def _settings(s) -> None:
    if not isinstance(s, Settings):
        raise ValueError(f"s must be Settings (see synthesis.settings), got {type(s).__name__}")


def penalty(s: Settings, u_HWC) -> jax.Array:
    """The differentiable regularizers of ``s`` at one image."""
    _settings(s)
    _one_image("u_HWC", u_HWC)
    total = s.l2 * jnp.sum(jnp.square(u_HWC))
    if s.alpha_weight:
        total += s.alpha_weight * alpha_norm(u_HWC, s.alpha)
    if s.tv_weight:
        total += s.tv_weight * total_variation(u_HWC, s.beta)
    return total


def project(s: Settings, u_HWC, grad_HWC, step, low_11C, high_11C) -> jax.Array:
    """Yosinski et al.'s regularization ``r``, after each step, in their order."""
    _settings(s)
    _one_image("u_HWC", u_HWC)
    if np.shape(grad_HWC) != np.shape(u_HWC):
        raise ValueError(f"grad_HWC must have the image's shape {np.shape(u_HWC)}, got {np.shape(grad_HWC)}")
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
    if not isinstance(model, MODELS):
        raise ValueError(f"paper_scale needs a Model or a wrapped model (jaxvis.wrap), got {type(model).__name__}")
    return PIXEL_SCALE * jnp.asarray(model.std, jnp.float32).reshape(1, 1, -1)


def item_bytes(model: Model, layer: str | None = None) -> int:
    """Bytes that one item of :func:`optimize` holds at its peak (float32): a forward and
    backward pass through ``model`` up to ``layer`` (:func:`jaxvis.project.backward_bytes`)
    and the loop's image, velocity, gradient and update."""
    return backward_bytes(model, layer) + 4 * 4 * math.prod(model.input_shape)


def items_per_call(model: Model, memory_budget: float, layer: str | None = None) -> int:
    """How many items of :func:`optimize` one call may hold within ``memory_budget`` bytes."""
    _checks.number("memory_budget", memory_budget, 0.0)
    per_item = item_bytes(model, layer)
    if memory_budget < per_item:
        raise ValueError(f"memory_budget must hold at least one item's working set, about {per_item:.3g} bytes "
                         f"(a forward and backward pass through {model.name}); got {memory_budget:.3g}")
    return int(memory_budget // per_item)


def optimize(objective, params: Params, x0_NHWC, targets, s: Settings, key: jax.Array | None = None,
             chunk: int | None = None) -> Synthesis:
    """Minimize ``objective(params, x_HWC, target) + penalties`` for each item.

    Args:
      objective: a hashable callable, e.g. :class:`ClassScore` or :class:`FeatureMatch`,
        with a ``model`` field.
      params: the network's parameters.
      x0_NHWC: the starting images, normalized, at least one.
      targets: one target per item (a pytree with a leading axis of size N).
      s: the loop and its regularizers.
      key: draws the jitter (default ``jax.random.key(0)``); each item gets its own key,
        whatever the chunking.
      chunk: items per compiled call (default all); calls have one size, the last one
        padded, so they compile once.
    """
    model = getattr(objective, "model", None)
    if not isinstance(model, MODELS):
        raise ValueError(f"objective must have a model field holding a Model or a wrapped model "
                         f"(e.g. ClassScore(model)), got "
                         f"{type(objective).__name__} with model {type(model).__name__}")
    _checks.images(x0_NHWC, model.input_shape, what="starting images")
    n = np.shape(x0_NHWC)[0]
    if not n:
        raise ValueError(f"starting images must hold at least one image, got shape {np.shape(x0_NHWC)}")
    for path, leaf in jax.tree_util.tree_flatten_with_path(targets)[0]:
        if np.ndim(leaf) < 1 or np.shape(leaf)[0] != n:
            raise ValueError(f"targets{jax.tree_util.keystr(path)} must have a leading axis of {n}, one per item, "
                             f"got shape {np.shape(leaf)}")
        _checks.finite(leaf, f"targets{jax.tree_util.keystr(path)}")
    _settings(s)
    key = jax.random.key(0) if key is None else key
    _checks.prng_key("key", key)
    _checks.count("chunk", chunk, optional=True)
    item_keys = jax.random.split(key, n)
    learning_rates = jnp.asarray(s.learning_rates())
    calls = -(-n // (chunk or n))
    size = -(-n // calls)
    parts = []
    for start in range(0, n, size):
        ids = np.arange(start, min(start + size, n))
        padded = np.concatenate([ids, np.repeat(ids[-1:], size - len(ids))])
        part = _optimize(objective, s, params, jnp.asarray(x0_NHWC, jnp.float32)[padded],
                         jax.tree.map(lambda t: jnp.asarray(t)[padded], targets), learning_rates, item_keys[padded])
        parts.append(Synthesis(part.images[:len(ids)], part.losses[:, :len(ids)], part.stopped_at[:len(ids)]))
    run = Synthesis(jnp.concatenate([p.images for p in parts]), jnp.concatenate([p.losses for p in parts], axis=1),
                    jnp.concatenate([p.stopped_at for p in parts]))
    for item, step in enumerate(np.asarray(run.stopped_at)):
        if step >= 0:
            warnings.warn(f"item {item}: the loss or the image became NaN or infinite at step {step} of {s.steps}; "
                          "stopped there and kept its last finite image (lower learning_rate or add a penalty)",
                          RuntimeWarning, stacklevel=2)
    return run


@functools.partial(jax.jit, static_argnames=("objective", "s"))
def _optimize(objective, s: Settings, params, x0_NHWC, targets, learning_rates_S, item_keys) -> Synthesis:
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


def _start_noise(what: str, init_std, key) -> jax.Array:
    """``key``, checked (default ``jax.random.key(0)``), after checking ``init_std``."""
    _checks.number("init_std", init_std, 0.0)
    key = jax.random.key(0) if key is None else key
    _checks.prng_key(what, key)
    return key


@functools.partial(jax.jit, static_argnames=("model", "until"))
def _outputs(model: Model, params: Params, x_NHWC, until: str | None = None) -> jax.Array:
    """The output of ``until`` (default: the logits) without the rest of the trace."""
    return model.apply(params, x_NHWC, until=until)[0]


def class_models(model: Model, params: Params, classes=None, preset: str | Settings = "simonyan",
                 key: jax.Array | None = None, init_std: float = 0.0, memory_budget: float = 2e9,
                 **overrides) -> tuple[Synthesis, jax.Array]:
    """One image per class that the network scores highly, in as few calls as fit the budget.

    Starts from the zero image (the mean: Simonyan et al. trained on zero-centred data),
    plus Gaussian noise of standard deviation ``init_std`` (paper units) if given: a
    network whose first ReLUs are all off at the mean image has a zero gradient there.

    Args:
      classes: a list of class indices, default all ``model.num_classes``.
      preset: a name in :data:`PRESETS` (``simonyan``, ``yosinski1`` ... ``yosinski4``)
        or :class:`Settings`; ``overrides`` replace some of its fields (``l2=...``).
      key: draws the starting noise and the jitter (default ``jax.random.key(0)``).
      memory_budget: bytes one compiled call may use; the classes are split into calls of
        ``memory_budget // item_bytes(model)`` classes (the same images as one call).

    Returns:
      The :class:`Synthesis` and each image's softmax probability of its class.
    """
    s = settings(preset, **overrides)
    if classes is None:
        classes = np.arange(model.num_classes)
    else:
        given = classes
        classes = np.asarray(list(classes) if isinstance(classes, range) else classes)
        if classes.ndim > 1:
            raise ValueError(f"classes must be a class index or a list of them, got shape {classes.shape}")
        classes = np.atleast_1d(classes)
        if not classes.size:
            raise ValueError(f"classes must hold at least one class, got an empty {type(given).__name__}")
    _checks.index("class", classes, model.num_classes)
    key = _start_noise("key", init_std, key)
    chunk = items_per_call(model, memory_budget)
    init_key, loop_key = jax.random.split(key)
    x0 = init_std * jax.random.normal(init_key, (len(classes), *model.input_shape)) / paper_scale(model)[None]
    run = optimize(ClassScore(model), params, x0, jnp.asarray(classes, jnp.int32), s, loop_key, chunk=chunk)
    unmoved = np.flatnonzero(np.all(np.asarray(run.images == x0).reshape(len(classes), -1), axis=1))
    if unmoved.size:
        warnings.warn(f"classes {classes[unmoved].tolist()}: the image never changed; the score's gradient is "
                      "zero at the start (all first-layer ReLUs off?): start from noise with init_std > 0",
                      RuntimeWarning, stacklevel=2)
    logits_NK = jnp.concatenate([_outputs(model, params, run.images[i:i + chunk])
                                 for i in range(0, len(classes), chunk)])
    return run, jax.nn.softmax(logits_NK)[jnp.arange(len(classes)), classes]


def invert(model: Model, params: Params, x_NHWC, layer: str, preset: str | Settings = "mahendran",
           key: jax.Array | None = None, init_std: float = 1.0, memory_budget: float = 2e9,
           **overrides) -> tuple[Synthesis, jax.Array]:
    """Reconstruct each image from its code at ``layer`` (Mahendran & Vedaldi).

    Starts from Gaussian noise of standard deviation ``init_std`` (paper units) drawn
    from ``key``. ``memory_budget``: bytes one compiled call may use, as in
    :func:`class_models`.

    Returns:
      The :class:`Synthesis` and the relative feature error ``||Phi(x) - Phi_0|| / ||Phi_0||``
      each reconstruction reached.
    """
    s = settings(preset, **overrides)
    _checks.images(x_NHWC, model.input_shape)
    if not np.shape(x_NHWC)[0]:
        raise ValueError(f"images must hold at least one image to invert, got shape {np.shape(x_NHWC)}")
    model.check_layer(layer)
    key = _start_noise("key", init_std, key)
    chunk = items_per_call(model, memory_budget, layer)
    init_key, loop_key = jax.random.split(key)
    targets = _outputs(model, params, x_NHWC, layer)
    zero = np.flatnonzero(~np.any(np.asarray(targets).reshape(len(targets), -1) != 0, axis=1))
    if zero.size:
        raise ValueError(f"images {zero[:5].tolist()} have an all-zero code at layer {layer!r}: the relative "
                         "feature error is undefined there (expected a code with some non-zero feature)")
    x0 = init_std * jax.random.normal(init_key, np.shape(x_NHWC)) / paper_scale(model)[None]
    run = optimize(FeatureMatch(model, layer), params, x0, targets, s, loop_key, chunk=chunk)
    return run, feature_error(model, params, run.images, targets, layer)


def feature_error(model: Model, params: Params, x_NHWC, targets, layer: str) -> jax.Array:
    """``||Phi(x) - Phi_0|| / ||Phi_0||`` per image at ``layer``; ``targets`` is ``Phi_0``,
    shape ``(N, *model.shapes[layer])``."""
    _checks.images(x_NHWC, model.input_shape)
    model.check_layer(layer)
    expected = (np.shape(x_NHWC)[0], *model.shapes[layer])
    if tuple(np.shape(targets)) != expected:
        raise ValueError(f"targets must be layer {layer!r}'s output for each image, shape {expected}, "
                         f"got {tuple(np.shape(targets))}")
    _checks.finite(targets, "targets")
    features = _outputs(model, params, x_NHWC, layer)
    axes = tuple(range(1, features.ndim))
    return jnp.sqrt(jnp.sum(jnp.square(features - targets), axes) / jnp.sum(jnp.square(targets), axes))
