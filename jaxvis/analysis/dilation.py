"""Dilation factors of a CNN, fixed and learned, and measures of what a class representation looks like.

The parts of the dilation study (``scripts/dilation_study.py``). A convolution with dilation
``d`` reads its ``k x k`` taps ``d`` pixels apart (Yu & Koltun, ICLR 2016): the same
parameters see a ``(k - 1) d + 1`` wide window. This module holds the study's reusable parts:

- :func:`check_dilations`: every factor fits every chosen conv layer, else a
  ``ValueError`` naming the factor and the layer.
- A learned dilation: each chosen conv layer computes ``sum_d softmax(alpha / T)_d *
  conv(x, K, dilation d)``, one ``k x k`` kernel ``K`` shared by the factors, a learned
  logit vector ``alpha`` per layer and a temperature ``T`` annealed so that the mixture
  commits. :func:`mixture_conv2d` is that sum, conv by conv (the readable reference);
  :func:`expand_kernel` writes the same mixture as one dense kernel, so that a
  :class:`LearnedDilation` runs as an ordinary :class:`~jaxvis.models.Model` and every
  tool of jaxvis (evaluation, saliency, class models) applies to it unchanged.
  :func:`train_learned` searches with the mixture for part of the run, then commits each
  layer to its strongest factor and trains that plain network to the end (as DARTS,
  Liu et al. 2019, discretizes and retrains), with :mod:`jaxvis.train`'s optimizer, data
  order, initialization and dropout, so that it is paired seed by seed with fixed runs.
- Measures of a saliency map (Simonyan et al. 2014, Sec. 3.1): how much of its mass lies
  on the digit's strokes (:func:`stroke_mass`), how far it spreads around its centroid
  (:func:`spread`), its entropy (:func:`entropy`), how smooth it is
  (:func:`neighbour_correlation`: dilation's gridding makes maps of isolated pixels on a
  lattice, Yu et al., CVPR 2017); :func:`representations` gathers them
  with the deletion area (:func:`jaxvis.saliency.deletion`) and the class models
  (:func:`jaxvis.synthesis.class_models`) of one network.
- Two statistics the study needs beyond scipy's tests: :func:`holm` (adjusted p-values of
  pairwise comparisons) and :func:`pick_agreement_p` (how likely seeds agree on a factor
  by chance).
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from tqdm import tqdm

from jaxvis import _checks, checkpoint, data, layers as L, saliency, synthesis, train
from jaxvis.configs import Config
from jaxvis.models import Model, Params

DILATIONS = (1, 2, 3, 4)
PICK_ENUMERATION = 10 ** 7  # pick_agreement_p's exact enumeration: 4 options by 11 seeds fit


# ---------------------------------------------------------------------------------------
# Checks


def _input_maps(model: Model) -> dict[str, tuple[int, ...]]:
    """The input shape of every layer (the previous layer's output)."""
    shapes = [model.input_shape] + [model.shapes[n] for n in model.names[:-1]]
    return dict(zip(model.names, shapes))


def conv_layers(model: Model) -> tuple[str, ...]:
    return tuple(layer.name for layer in model.layers if layer.convolution)


def check_dilations(model: Model, dilations: Sequence[int], layers: Sequence[str] | None = None) -> tuple[str, ...]:
    """Raise ``ValueError`` unless every factor is an integer >= 1 whose dilated kernel
    fits the input map of every chosen conv layer (default: all of them).

    Returns the chosen layer names.
    """
    layers = conv_layers(model) if layers is None else tuple(layers)
    if not layers:
        raise ValueError(f"{model.name} has no conv layer to dilate")
    if not len(dilations):
        raise ValueError("give at least one dilation factor")
    inputs = _input_maps(model)
    for name in layers:
        model.check_layer(name)
        layer = model.layer(name)
        if not layer.convolution:
            raise ValueError(f"layer {name!r} of {model.name} is a {layer.kind} layer; only conv layers are dilated")
        h, w = inputs[name][:2]
        for d in dilations:
            if isinstance(d, bool) or not isinstance(d, (int, np.integer)) or d < 1:
                raise ValueError(f"dilation factor {d!r} for layer {name!r}: it must be an integer >= 1")
            span = [(k - 1) * int(d) + 1 for k in layer.kernel]
            if span[0] > h or span[1] > w:
                raise ValueError(
                    f"dilation factor {d} for layer {name!r}: its {layer.kernel[0]}x{layer.kernel[1]} kernel then "
                    f"spans {span[0]}x{span[1]} pixels, more than its {h}x{w} input map (most taps would read "
                    "only padding)")
    return layers


# ---------------------------------------------------------------------------------------
# The mixture of dilations


def _check_mixture(kernel_HWIO, weights_D, dilations) -> None:
    """Raise unless ``kernel`` is an odd HWIO kernel and ``weights`` has one weight per factor."""
    if np.ndim(kernel_HWIO) != 4 or any(k % 2 == 0 for k in np.shape(kernel_HWIO)[:2]):
        raise ValueError(f"kernel must be HWIO with odd height and width, got shape {np.shape(kernel_HWIO)}")
    if not len(dilations) or not all(isinstance(d, (int, np.integer)) and not isinstance(d, bool) and d >= 1
                                     for d in dilations):
        raise ValueError(f"dilations must be integers >= 1, at least one, got {tuple(dilations)!r}")
    if np.shape(weights_D) != (len(dilations),):
        raise ValueError(f"weights must have shape ({len(dilations)},), one per dilation factor, "
                         f"got {np.shape(weights_D)}")


def _same_padding(kernel: tuple[int, int], dilation: int) -> L.Padding:
    return tuple((dilation * (k // 2),) * 2 for k in kernel)


def mixture_conv2d(x_NHWC, kernel_HWIO, bias_O, weights_D, dilations: Sequence[int]):
    """``sum_d weights[d] * conv(x, kernel, dilation d, padding d * (k // 2)) + bias``.

    The reference form: one convolution per factor, each with the padding that keeps the
    map size (odd kernels, stride 1). Returns ``(N, H, W, O)``.
    """
    _check_mixture(kernel_HWIO, weights_D, dilations)
    if np.shape(bias_O) != np.shape(kernel_HWIO)[3:]:
        raise ValueError(f"bias must have shape {np.shape(kernel_HWIO)[3:]}, one per output, got {np.shape(bias_O)}")
    y = sum(w * L.conv2d(x_NHWC, kernel_HWIO, None, padding=_same_padding(kernel_HWIO.shape[:2], d),
                         dilation=(d, d)) for w, d in zip(weights_D, dilations))
    return y + bias_O.reshape(1, 1, 1, -1)


def expand_kernel(kernel_HWIO, weights_D, dilations: Sequence[int]):
    """The mixture of :func:`mixture_conv2d` as one dense kernel.

    Tap ``(i, j)`` of ``kernel`` at dilation ``d`` sits at ``(c + (i - k // 2) d, ...)`` of
    a kernel of size ``(k - 1) max(d) + 1`` (centre ``c``), weighted by that factor's
    weight; the centre tap is shared by all factors. A convolution with it and padding
    ``max(d) * (k // 2)`` equals the mixture. Returns ``(K, K', I, O)``.
    """
    _check_mixture(kernel_HWIO, weights_D, dilations)
    kh, kw = kernel_HWIO.shape[:2]
    top = max(dilations)
    big = jnp.zeros(((kh - 1) * top + 1, (kw - 1) * top + 1, *kernel_HWIO.shape[2:]), kernel_HWIO.dtype)
    for w, d in zip(weights_D, dilations):
        rows = top * (kh // 2) + d * (np.arange(kh) - kh // 2)
        cols = top * (kw // 2) + d * (np.arange(kw) - kw // 2)
        big = big.at[rows[:, None], cols[None, :]].add(w * kernel_HWIO)
    return big


def entropy_of(weights_D) -> jax.Array:
    """``-sum w log w`` in nats (``0 log 0 = 0``)."""
    return -jnp.sum(jnp.where(weights_D > 0, weights_D * jnp.log(jnp.where(weights_D > 0, weights_D, 1.0)), 0.0))


@dataclasses.dataclass(frozen=True)
class LearnedDilation:
    """A network whose chosen conv layers mix the factors ``dilations`` with learned weights.

    ``base`` holds the geometry: every mixed layer has an odd kernel, stride 1, dilation 1
    and the padding ``k // 2`` that keeps its map size (e.g. ``mnist_cnn(dilation=1)``).
    Parameters are ``{"network": base's parameters, "logits": {layer: (D,)}}``; the
    layer's mixture weights are ``softmax(logits / temperature)``.
    """

    base: Model
    dilations: tuple[int, ...] = DILATIONS
    layers: tuple[str, ...] | None = None

    def __post_init__(self):
        if not isinstance(self.base, Model):
            raise ValueError(f"LearnedDilation needs a Model as base, got {type(self.base).__name__}")
        layers = check_dilations(self.base, self.dilations, self.layers)
        object.__setattr__(self, "dilations", tuple(int(d) for d in self.dilations))
        object.__setattr__(self, "layers", layers)
        if len(set(self.dilations)) != len(self.dilations):
            raise ValueError(f"dilation factors must be distinct, got {self.dilations}")
        for name in layers:
            layer = self.base.layer(name)
            if (layer.stride != (1, 1) or layer.dilation != (1, 1) or any(k % 2 == 0 for k in layer.kernel)
                    or layer.padding != _same_padding(layer.kernel, 1)):
                raise ValueError(f"layer {name!r} of {self.base.name} must have an odd kernel, stride 1, dilation 1 "
                                 f"and padding kernel // 2 to be mixed over dilations; it has kernel {layer.kernel}, "
                                 f"stride {layer.stride}, dilation {layer.dilation}, padding {layer.padding}")

    @functools.cached_property
    def model(self) -> Model:
        """The base with each mixed layer's kernel widened to hold every factor's taps."""
        top = max(self.dilations)
        edits = {}
        for name in self.layers:
            kernel = tuple((k - 1) * top + 1 for k in self.base.layer(name).kernel)
            edits[name] = dict(kernel=kernel, padding=_same_padding(self.base.layer(name).kernel, top))
        return dataclasses.replace(self.base.edit(**edits), name=f"{self.base.name}[learned dilation "
                                                                  f"{self.dilations}]")

    def init(self, key: jax.Array) -> Params:
        """The base's initialization (the same kernels as any fixed factor from ``key``)
        and zero logits: every factor starts with the same weight."""
        _checks.prng_key("key", key)
        return {"network": self.base.init(key),
                "logits": {name: jnp.zeros(len(self.dilations), jnp.float32) for name in self.layers}}

    def weights(self, params: Params, temperature: float = 1.0) -> dict[str, jax.Array]:
        """Each mixed layer's weights over ``dilations``, ``(D,)``."""
        _checks.number("temperature", temperature, 0.0, above=True)
        logits = params.get("logits") if isinstance(params, dict) else None
        if not isinstance(logits, dict) or sorted(logits) != sorted(self.layers):
            raise ValueError(f"params must be LearnedDilation parameters with logits for {list(self.layers)}, got "
                             f"{type(params).__name__} with logits for {sorted(logits) if isinstance(logits, dict) else None}")
        return {name: jax.nn.softmax(params["logits"][name] / temperature) for name in self.layers}

    def expand(self, params: Params, temperature: float = 1.0) -> Params:
        """Parameters of :attr:`model`: each mixed kernel expanded with its weights."""
        network = dict(params["network"])
        for name, w in self.weights(params, temperature).items():
            network[name] = {**network[name], "kernel": expand_kernel(network[name]["kernel"], w, self.dilations)}
        return network

    def apply(self, params: Params, x, rule: str = "gradient", train: bool = False, rng: jax.Array | None = None,
              temperature: float = 1.0):
        """The forward pass of the mixture: ``(logits, trace)``, as :meth:`Model.apply`."""
        return self.model.apply(self.expand(params, temperature), x, rule=rule, train=train, rng=rng)

    def picks(self, params: Params) -> dict[str, int]:
        """Each mixed layer's strongest factor (the first on ties)."""
        self.weights(params)
        return {name: self.dilations[int(np.argmax(np.asarray(params["logits"][name])))] for name in self.layers}

    def edits(self, picks: dict[str, int]) -> dict[str, dict[str, Any]]:
        """The :meth:`Model.edit` changes that set each layer to its picked factor."""
        return {name: dict(dilation=d, padding=_same_padding(self.base.layer(name).kernel, d))
                for name, d in picks.items()}

    def commit(self, params: Params) -> tuple[Model, Params]:
        """The plain network with each mixed layer at its strongest factor, and its parameters."""
        return self.base.edit(**self.edits(self.picks(params))), params["network"]


# ---------------------------------------------------------------------------------------
# Training a learned dilation


@dataclasses.dataclass(frozen=True)
class Search:
    """How :func:`train_learned` learns the factors.

    ``fraction`` of the run's steps train the mixture; then each layer commits to its
    strongest factor and the plain network trains on (``1.0``: never commit). The
    temperature falls geometrically from ``temperature[0]`` to ``temperature[1]`` over the
    search, so the mixture grows one-hot before the commit; ``entropy_weight`` adds
    ``weight * sum over layers of the weights' entropy`` to the loss. The logits have
    their own Adam with ``learning_rate``, the network keeps the config's optimizer.
    """

    dilations: tuple[int, ...] = DILATIONS
    fraction: float = 0.5
    temperature: tuple[float, float] = (1.0, 0.1)
    entropy_weight: float = 0.0
    learning_rate: float = 0.05
    record_every: int = 10

    def __post_init__(self):
        _checks.annotated_fields(self)
        _checks.number("search fraction", self.fraction, 0.0, 1.0)
        if not isinstance(self.temperature, (tuple, list)) or len(self.temperature) != 2:
            raise ValueError(f"temperature must be (start, end), both > 0, got {self.temperature!r}")
        for t in self.temperature:
            _checks.number("temperature (start, end)", t, 0.0, above=True)
        _checks.number("entropy_weight", self.entropy_weight, 0.0)
        _checks.number("learning_rate", self.learning_rate, 0.0, above=True)
        _checks.count("record_every", self.record_every)
        if not isinstance(self.dilations, (tuple, list)) or not self.dilations or not all(
                isinstance(d, (int, np.integer)) and not isinstance(d, bool) and d >= 1 for d in self.dilations):
            raise ValueError(f"dilations must be integers >= 1, at least one, got {self.dilations!r}")

    def temperature_at(self, step, search_steps: int):
        """``T0 * (T1 / T0) ** (step / search_steps)``."""
        t0, t1 = self.temperature
        return t0 * (t1 / t0) ** (step / max(search_steps, 1))


def train_learned(config: Config, workdir, search: Search = Search(), *, data_dir=None,
                  progress: bool = True) -> dict[str, Any]:
    """Train ``config``'s network with a learned dilation in each conv layer, then evaluate.

    The network parameters get the initialization, data order and dropout of
    ``train.train_and_evaluate(config)`` (all from ``config.seed``), so a run with
    ``search.fraction = 0`` is that fixed run at factor ``search.dilations[0]``. The final
    parameters are saved to ``workdir/checkpoints`` with a card that
    :func:`jaxvis.checkpoint.restore_model` reads: the committed network, or with
    ``fraction = 1`` the expanded mixture (:attr:`LearnedDilation.model`).

    Returns:
      ``{"model", "params", "eval", "picks", "weights", "weights_at_temperature",
      "temperature", "trajectory", "step", "search_steps", "train_seconds"}``: the final
      network and its parameters, its evaluation (``loss``, ``top1``, ``top5``), each
      layer's pick and its weights at the end of the search (at temperature 1, and at the
      ``temperature`` reached), and the weights (temperature 1) every
      ``search.record_every`` steps of the search.
    """
    if not isinstance(config, Config):
        raise ValueError(f"config must be a Config (jaxvis.configs.get), got {type(config).__name__}")
    if not isinstance(search, Search):
        raise ValueError(f"search must be a Search, got {type(search).__name__}")
    learned = LearnedDilation(config.build_model(), search.dilations)
    train_ds = data.open_dataset(config.dataset, config.train_split, data_dir=data_dir, image_size=config.image_size)
    eval_ds = data.open_dataset(config.dataset, config.eval_split, data_dir=data_dir, image_size=config.image_size)
    steps_per_epoch = train_ds.num_examples // config.batch_size
    if steps_per_epoch == 0:
        raise ValueError(f"batch_size {config.batch_size} exceeds the {train_ds.num_examples} training examples")
    stop = min(config.num_epochs * steps_per_epoch, config.max_steps or config.num_epochs * steps_per_epoch)
    search_steps = round(search.fraction * stop)
    tx = optax.multi_transform({"network": train.make_optimizer(config, steps_per_epoch),
                                "logits": optax.adam(search.learning_rate)},
                               {"network": "network", "logits": "logits"})
    params = learned.init(jax.random.fold_in(jax.random.key(config.seed), 0))
    state = {"step": jnp.zeros((), jnp.int32), "params": params, "opt_state": tx.init(params)}
    dropout_key = jax.random.fold_in(jax.random.key(config.seed), 1)

    def make_update(loss_fn, frozen_logits: bool):
        def update(state, images_NHWC, labels_N, dropout_key):  # the key as an argument: one program for all seeds
            key = jax.random.fold_in(dropout_key, state["step"])
            loss, grads = jax.value_and_grad(loss_fn)(state["params"], images_NHWC, labels_N, key, state["step"])
            updates, opt_state = tx.update(grads, state["opt_state"], state["params"])
            if frozen_logits:  # after the commit Adam's momentum would still move them
                updates = {**updates, "logits": jax.tree.map(jnp.zeros_like, updates["logits"])}
            params = optax.apply_updates(state["params"], updates)
            if config.filter_radius is not None:
                params = {**params, "network": train.renormalize_filters(params["network"], config.filter_radius)}
            return {"step": state["step"] + 1, "params": params, "opt_state": opt_state}, loss

        return jax.jit(update, donate_argnums=0)

    def cross_entropy(logits_NK, labels_N):
        return optax.softmax_cross_entropy_with_integer_labels(logits_NK, labels_N).mean()

    def search_loss(params, images_NHWC, labels_N, key, step):
        temperature = search.temperature_at(step, search_steps)
        logits_NK, _ = learned.apply(params, learned.base.normalize(images_NHWC), train=True, rng=key,
                                     temperature=temperature)
        entropies = [entropy_of(w) for w in learned.weights(params, temperature).values()]
        return cross_entropy(logits_NK, labels_N) + search.entropy_weight * sum(entropies)

    def committed_loss(model: Model):
        def loss(params, images_NHWC, labels_N, key, step):
            logits_NK, _ = model.apply(params["network"], model.normalize(images_NHWC), train=True, rng=key)
            return cross_entropy(logits_NK, labels_N)

        return loss

    trajectory = {"step": [], **{name: [] for name in learned.layers}}

    def record(step: int) -> None:
        trajectory["step"].append(step)
        for name, w in learned.weights(state["params"]).items():
            trajectory[name].append(np.asarray(w).round(5).tolist())

    update = make_update(search_loss, frozen_logits=False)
    committed = None  # the plain network, once the search is over
    bar = tqdm(total=stop, unit="step", disable=not progress, dynamic_ncols=True, desc="learned dilation")
    began = time.perf_counter()
    step, epoch = 0, 0
    try:
        while step < stop:
            for images, labels in train_ds.batches(config.batch_size, shuffle_seed=config.seed, epoch=epoch,
                                                   drop_remainder=True, augment=config.augment):
                if step == search_steps and search.fraction < 1:
                    committed = learned.base.edit(**learned.edits(learned.picks(state["params"])))
                    update = make_update(committed_loss(committed), frozen_logits=True)
                if step < search_steps and step % search.record_every == 0:
                    record(step)
                state, loss = update(state, images, labels, dropout_key)
                step += 1
                bar.update()
                if step % 50 == 0:
                    bar.set_postfix(loss=f"{float(loss):.4f}")
                if step == stop:
                    break
            epoch += 1
    finally:
        bar.close()
    params = state["params"]
    record(search_steps)
    temperature = float(search.temperature_at(search_steps, search_steps))
    if search.fraction < 1 and committed is None:  # the search took every step
        committed = learned.base.edit(**learned.edits(learned.picks(params)))
    if committed is None:
        final_model, final_params = learned.model, learned.expand(params, temperature)
    else:
        final_model, final_params = committed, params["network"]
    metrics = train.evaluate(final_model, final_params, eval_ds.batches(config.eval_batch_size))
    seconds = time.perf_counter() - began
    _save(config, learned, params, final_params, search, stop, workdir)
    return {"model": final_model, "params": final_params, "eval": metrics, "picks": learned.picks(params),
            "weights": {name: np.asarray(w).tolist() for name, w in learned.weights(params).items()},
            "weights_at_temperature": {name: np.asarray(w).tolist()
                                       for name, w in learned.weights(params, temperature).items()},
            "temperature": temperature, "trajectory": trajectory, "step": stop, "search_steps": search_steps,
            "train_seconds": seconds}


def _save(config: Config, learned: LearnedDilation, params: Params, final_params: Params, search: Search,
          step: int, workdir) -> None:
    """The final parameters, with a card that rebuilds the final network."""
    if search.fraction == 1:
        changes = {name: dict(kernel=learned.model.layer(name).kernel, padding=learned.model.layer(name).padding)
                   for name in learned.layers}
    else:
        changes = learned.edits(learned.picks(params))
    card = config.model_card()
    before = card.get("model_edits", {})
    card["model_edits"] = {name: {**before.get(name, {}), **changes.get(name, {})} for name in {*before, *changes}}
    card.update(learned_dilation=dataclasses.asdict(search), seed=config.seed, dataset=config.dataset,
                logits={name: np.asarray(v).tolist() for name, v in params["logits"].items()})
    ckpt = checkpoint.Checkpointer(Path(workdir) / "checkpoints", json.loads(json.dumps(card)), keep=1,
                                   items=("params",))
    ckpt.save(step, {"params": final_params})
    ckpt.close()


# ---------------------------------------------------------------------------------------
# Measures of saliency maps (any non-negative maps), batched over images


def _normalized(maps_NHW) -> jax.Array:
    """Each map divided by its sum (a map that sums to 0 stays 0)."""
    maps_NHW = jnp.asarray(maps_NHW, jnp.float32)
    total_N11 = maps_NHW.sum(axis=(1, 2), keepdims=True)
    return maps_NHW / jnp.where(total_N11 > 0, total_N11, 1.0)


def _check_maps(maps_NHW, minimum: int = 1, signed: bool = False) -> None:
    """Raise unless ``maps`` are finite maps ``(N, H, W)``, at least ``minimum`` pixels a side,
    and non-negative unless ``signed`` (the measures of mass read a map as a distribution)."""
    if np.ndim(maps_NHW) != 3 or not np.shape(maps_NHW)[0] or min(np.shape(maps_NHW)[1:]) < minimum:
        raise ValueError(f"maps must be saliency maps (N, H, W) with N >= 1 and H, W >= {minimum}, got shape "
                         f"{np.shape(maps_NHW)}")
    _checks.finite(maps_NHW, "maps")
    if not signed and _checks.is_concrete(maps_NHW) and np.min(maps_NHW) < 0:
        raise ValueError(f"maps must be non-negative (a saliency map's magnitude), got a minimum of "
                         f"{float(np.min(maps_NHW)):.3g}")


def stroke_mass(maps_NHW, pixels_NHW, threshold: float = 0.5) -> jax.Array:
    """The share of each map's mass on stroke pixels (``pixels > threshold``), ``(N,)``."""
    _check_maps(maps_NHW)
    if np.shape(pixels_NHW) != np.shape(maps_NHW):
        raise ValueError(f"pixels must have the maps' shape {np.shape(maps_NHW)}, got {np.shape(pixels_NHW)}")
    _checks.finite(pixels_NHW, "pixels")
    _checks.number("threshold", threshold)
    return _stroke_mass(maps_NHW, pixels_NHW, threshold)


@jax.jit
def _stroke_mass(maps_NHW, pixels_NHW, threshold):
    return jnp.sum(_normalized(maps_NHW) * (pixels_NHW > threshold), axis=(1, 2))


def spread(maps_NHW) -> jax.Array:
    """Mean distance (pixels) from each map's centroid, weighted by the map, ``(N,)``."""
    _check_maps(maps_NHW)
    return _spread(maps_NHW)


@jax.jit
def _spread(maps_NHW):
    q_NHW = _normalized(maps_NHW)
    h, w = q_NHW.shape[1:]
    rows_H, cols_W = jnp.arange(h, dtype=jnp.float32), jnp.arange(w, dtype=jnp.float32)
    row_N = jnp.einsum("nhw,h->n", q_NHW, rows_H)
    col_N = jnp.einsum("nhw,w->n", q_NHW, cols_W)
    distance_NHW = jnp.sqrt(jnp.square(rows_H[None, :, None] - row_N[:, None, None])
                            + jnp.square(cols_W[None, None, :] - col_N[:, None, None]))
    return jnp.sum(q_NHW * distance_NHW, axis=(1, 2))


def entropy(maps_NHW) -> jax.Array:
    """Shannon entropy (bits) of each map as a distribution over pixels, ``(N,)``;
    ``log2(H W)`` for a flat map, 0 for a single pixel."""
    _check_maps(maps_NHW)
    return _entropy(maps_NHW)


@jax.jit
def _entropy(maps_NHW):
    q_NP = _normalized(maps_NHW).reshape(np.shape(maps_NHW)[0], -1)
    return jax.vmap(entropy_of)(q_NP) / jnp.log(2.0)


def _correlation(a_NP, b_NP) -> jax.Array:
    """Pearson correlation of each row of ``a`` with the same row of ``b`` (0 if either is flat)."""
    a_NP = a_NP - a_NP.mean(axis=1, keepdims=True)
    b_NP = b_NP - b_NP.mean(axis=1, keepdims=True)
    scale_N = jnp.sqrt(jnp.sum(jnp.square(a_NP), axis=1) * jnp.sum(jnp.square(b_NP), axis=1))
    return jnp.where(scale_N > 0, jnp.sum(a_NP * b_NP, axis=1) / jnp.where(scale_N > 0, scale_N, 1.0), 0.0)


def neighbour_correlation(maps_NHW) -> jax.Array:
    """How smooth each map is: the mean of the correlations of every pixel with its right
    and with its lower neighbour, ``(N,)``. 1 for a ramp, about 0 for noise, -1 for a
    checkerboard; dilation's gridding (isolated pixels on a lattice) pulls it down."""
    _check_maps(maps_NHW, minimum=2, signed=True)
    return _neighbour_correlation(maps_NHW)


@jax.jit
def _neighbour_correlation(maps_NHW):
    maps_NHW = jnp.asarray(maps_NHW, jnp.float32)
    n = maps_NHW.shape[0]
    right_N = _correlation(maps_NHW[:, :, :-1].reshape(n, -1), maps_NHW[:, :, 1:].reshape(n, -1))
    down_N = _correlation(maps_NHW[:, :-1, :].reshape(n, -1), maps_NHW[:, 1:, :].reshape(n, -1))
    return (right_N + down_N) / 2


def representations(model: Model, params: Params, images_NHWC, labels_N, *, stroke_threshold: float = 0.5,
                    deletion_steps: int = 28, class_model_preset: str = "simonyan",
                    class_model_steps: int | None = None) -> dict[str, Any]:
    """How one network represents the classes: saliency maps of ``images`` (uint8 or pixels
    in [0, 1]) for their labels and their measures, and one class model per class.

    Returns ``{"maps" (N, H, W), "stroke_mass", "spread", "entropy",
    "neighbour_correlation", "deletion_area" (each (N,)), "class_models" (K, H, W, C)
    normalized inputs, "class_probability", "class_model_spread",
    "class_model_neighbour_correlation" (each (K,))}``, all numpy; the class-model
    measures are taken on each class model's magnitude (largest over channels).
    ``class_model_steps`` replaces the preset's number of steps.
    """
    images = np.asarray(images_NHWC)
    if images.dtype != np.uint8 and images.dtype.kind != "f":
        raise ValueError(f"images must be uint8 in [0, 255] or pixels in [0, 1], got dtype {images.dtype}")
    pixels_NHWC = images.astype(np.float32) / (255.0 if images.dtype == np.uint8 else 1.0)
    _checks.images(pixels_NHWC, model.input_shape)
    if not len(pixels_NHWC) or pixels_NHWC.min() < 0 or pixels_NHWC.max() > 1:
        raise ValueError(f"images must be at least one image of pixels in [0, 1] (or uint8), got shape "
                         f"{pixels_NHWC.shape}" + (f" with values from {pixels_NHWC.min():.3g} to "
                                                   f"{pixels_NHWC.max():.3g}" if len(pixels_NHWC) else ""))
    labels_N = _checks.labels(labels_N, len(pixels_NHWC), model.num_classes)
    _checks.number("stroke_threshold", stroke_threshold, 0.0, 1.0)
    _checks.count("deletion_steps", deletion_steps)
    _checks.count("class_model_steps", class_model_steps, optional=True)
    _checks.choice("class_model_preset", class_model_preset, synthesis.PRESETS)
    x_NHWC = model.normalize(pixels_NHWC)
    labels_N = jnp.asarray(labels_N, jnp.int32)
    maps_NHW = saliency.saliency(model, params, x_NHWC, labels_N)
    curves = saliency.deletion(model, params, x_NHWC, maps_NHW, labels_N, steps=deletion_steps)
    overrides = {} if class_model_steps is None else {"steps": class_model_steps}
    run, probabilities_K = synthesis.class_models(model, params, preset=class_model_preset, **overrides)
    pixels_NHW = pixels_NHWC.max(axis=-1)
    class_maps_KHW = saliency.to_map(run.images)
    out = {"maps": maps_NHW, "stroke_mass": stroke_mass(maps_NHW, pixels_NHW, stroke_threshold),
           "spread": spread(maps_NHW), "entropy": entropy(maps_NHW),
           "neighbour_correlation": neighbour_correlation(maps_NHW), "deletion_area": curves.area,
           "class_models": run.images, "class_probability": probabilities_K,
           "class_model_spread": spread(class_maps_KHW),
           "class_model_neighbour_correlation": neighbour_correlation(class_maps_KHW)}
    return {k: np.asarray(v) for k, v in out.items()}


MEASURES = ("stroke_mass", "spread", "entropy", "neighbour_correlation", "deletion_area", "class_probability",
            "class_model_spread", "class_model_neighbour_correlation")


# ---------------------------------------------------------------------------------------
# Statistics


def holm(p_values) -> np.ndarray:
    """Holm-Bonferroni adjusted p-values (step-down, monotone, capped at 1), same order; a
    NaN (a test that could not run) stays NaN."""
    p = np.asarray(p_values)
    if p.ndim != 1 or not p.size or p.dtype.kind not in "iuf" or not np.all(np.isnan(p) | ((p >= 0) & (p <= 1))):
        raise ValueError(f"p_values must be a non-empty list of p-values in [0, 1] (or NaN), got {p.tolist()!r}")
    p = p.astype(np.float64)
    order = np.argsort(p, kind="stable")
    m = len(p)
    adjusted = np.minimum(1.0, np.maximum.accumulate((m - np.arange(m)) * p[order]))
    out = np.empty(m)
    out[order] = adjusted
    return out


def pick_agreement_p(counts: Sequence[int], options: int) -> float:
    """P(the most common choice is made at least ``max(counts)`` times) when each of
    ``sum(counts)`` seeds chooses uniformly among ``options`` (exact, by enumeration): how
    surprising the seeds' agreement on a factor would be if the search picked at random."""
    _checks.count("options", options)
    if not isinstance(counts, Sequence) or not counts:
        raise ValueError(f"counts must be a non-empty list of integers >= 0 (seeds per choice), got {counts!r}")
    for c in counts:
        _checks.count("each count (seeds per choice)", c, minimum=0)
    if len(counts) > options:
        raise ValueError(f"counts has {len(counts)} entries; expected at most one per option ({options})")
    n, top = int(sum(counts)), max(counts)
    if options ** n > PICK_ENUMERATION:
        raise ValueError(f"{sum(counts)} seeds over {options} options make {options}**{n} choices to enumerate; "
                         f"expected at most {PICK_ENUMERATION:.0e}")
    choices_CN = np.array(list(itertools.product(range(options), repeat=n))).reshape(-1, n)
    most_C = np.stack([np.sum(choices_CN == o, axis=1) for o in range(options)]).max(axis=0)
    return float(np.mean(most_C >= top))
