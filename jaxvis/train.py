"""Training with optax, following Zeiler & Fergus Sec. 3 where the config asks for it.

SGD with momentum or Adam, learning-rate schedules, weight decay, and the paper's filter
renormalization (after each step, every conv filter whose RMS exceeds a fixed radius is
rescaled to it); top-1 and top-5 evaluation (10-crop for ImageNet); a progress bar, a
JSON-lines log (``workdir/metrics.jsonl``) and periodic checkpoints that a rerun resumes
from. Each batch is split over a mesh of devices with a ``data`` axis (over several hosts
after ``jax.distributed.initialize``). ``train_many`` trains K models that differ in seed
in one vmapped program.

The train state is a plain dict ``{"step", "params", "opt_state"}``. Model ``k`` of a run
is fully set by its seed: initialization, data order and dropout all derive from it, so a
resumed run, a data-parallel run and ``train_many`` all reproduce ``train_and_evaluate``.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import time
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.experimental import multihost_utils
from jax.sharding import Mesh, NamedSharding, PartitionSpec
from tqdm import tqdm

from jaxvis import _checks, checkpoint, data, layers, models
from jaxvis._io import folder, write_text_atomically
from jaxvis.configs import Config

METRICS_FILE = "metrics.jsonl"
# settings that change how a run is carried out, not what it computes: a run may resume with others
RUN_SETTINGS = ("max_steps", "num_devices", "log_every_steps", "checkpoint_every_steps", "keep_checkpoints",
                "eval_every_epochs", "eval_batch_size")


def _check_config(config) -> None:
    if not isinstance(config, Config):
        raise ValueError(f"config must be a jaxvis.configs.Config (e.g. configs.get('mnist_cnn')), got "
                         f"{_given(config)}")


def _given(value) -> str:
    """A value for an error message: numbers, strings and tuples of them as written, others by type."""
    if isinstance(value, (int, float, str, type(None))):
        return repr(value)
    if isinstance(value, (tuple, list)):
        return f"({', '.join(map(_given, value))})"
    return f"a {type(value).__name__}"


def _seeds(seeds) -> tuple[int, ...]:
    """``seeds`` as a tuple of distinct integers >= 0, at least one; a ``ValueError`` otherwise."""
    try:
        given = None if isinstance(seeds, (str, bytes)) else tuple(
            int(s) if isinstance(s, np.integer) else s for s in seeds)
    except TypeError:  # not iterable: an int, a PRNG key, ...
        given = None
    if not given or len(set(given)) != len(given) or not all(
            isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in given):
        raise ValueError(f"seeds must be distinct integers >= 0, at least one (one model per seed), got "
                         f"{_given(seeds if given is None else given)}")
    return given


def checkpoint_card(config: Config, seeds: tuple[int, ...] | None = None) -> dict[str, Any]:
    """The card a run writes beside its checkpoints, and checks before resuming: the model,
    the data and every setting that changes what is computed. ``seeds`` for a
    :func:`train_many` run, None for :func:`train_and_evaluate` (``config.seed``)."""
    _check_config(config)
    seeds = None if seeds is None else _seeds(seeds)
    return {**config.model_card(), "num_models": None if seeds is None else len(seeds),
            "seeds": [config.seed] if seeds is None else list(seeds), "dataset": config.dataset,
            "config": {k: v for k, v in dataclasses.asdict(config).items() if k not in RUN_SETTINGS}}


# ---------------------------------------------------------------------------------------
# Optimizer


def make_schedule(config: Config, steps_per_epoch: int) -> optax.Schedule:
    """The learning rate at each step: warm-up, then constant, cosine or step decay."""
    _check_config(config)
    _checks.count("steps_per_epoch", steps_per_epoch)
    lr = config.learning_rate
    warmup = round(config.warmup_epochs * steps_per_epoch)
    if config.schedule == "constant":
        main = optax.constant_schedule(lr)
    elif config.schedule == "cosine":
        main = optax.cosine_decay_schedule(lr, config.num_epochs * steps_per_epoch - warmup)
    else:
        main = optax.piecewise_constant_schedule(
            lr, {e * steps_per_epoch - warmup: config.decay_factor for e in config.decay_epochs})
    if not warmup:
        return main
    return optax.join_schedules([optax.linear_schedule(0.0, lr, warmup), main], [warmup])


def _kernels(params):
    return jax.tree_util.tree_map_with_path(lambda path, _: path[-1].key == "kernel", params)


def make_optimizer(config: Config, steps_per_epoch: int) -> optax.GradientTransformation:
    """SGD with momentum and L2 weight decay, or AdamW; decay applies to kernels only."""
    schedule = make_schedule(config, steps_per_epoch)
    if config.optimizer == "adam":
        return optax.adamw(schedule, weight_decay=config.weight_decay, mask=_kernels)
    return optax.chain(optax.add_decayed_weights(config.weight_decay, mask=_kernels),
                       optax.sgd(schedule, momentum=config.momentum or None))


def renormalize_filters(params: models.Params, radius: float) -> models.Params:
    """Rescale every conv filter (a kernel's ``[:, :, :, o]``) whose RMS exceeds ``radius`` to ``radius``."""
    if isinstance(radius, bool) or not isinstance(radius, (int, float)) or not 0 < radius < float("inf"):
        raise ValueError(f"radius must be a finite number > 0, got {_given(radius)}")

    def renormalize(path, x):
        if path[-1].key != "kernel" or x.ndim != 4:
            return x
        rms = jnp.sqrt(jnp.mean(jnp.square(x), axis=(0, 1, 2), keepdims=True))
        return x * jnp.minimum(1.0, radius / rms)

    return jax.tree_util.tree_map_with_path(renormalize, params)


# ---------------------------------------------------------------------------------------
# Steps


def _make_update(model: models.Model, tx: optax.GradientTransformation, radius: float | None):
    def loss_fn(params, images_NHWC, labels_N, key):
        logits_NK, trace = model.apply(params, model.normalize(images_NHWC), train=True, rng=key)
        return optax.softmax_cross_entropy_with_integer_labels(logits_NK, labels_N).mean(), (logits_NK, trace.state)

    def update(state, images_NHWC, labels_N, key):
        key = jax.random.fold_in(key, state["step"])
        (loss, (logits_NK, statistics)), grads = jax.value_and_grad(loss_fn, has_aux=True)(
            state["params"], images_NHWC, labels_N, key)
        updates, opt_state = tx.update(grads, state["opt_state"], state["params"])
        params = optax.apply_updates(state["params"], updates)
        # batch norm's running statistics get no gradient: the pass's running averages replace them
        params = {**params, **{name: {**params[name], **stats} for name, stats in statistics.items()}}
        if radius is not None:
            params = renormalize_filters(params, radius)
        finite = jnp.isfinite(loss)
        for leaf in jax.tree.leaves(params):
            finite &= jnp.all(jnp.isfinite(leaf))
        metrics = {"loss": loss, "accuracy": jnp.mean(jnp.argmax(logits_NK, -1) == labels_N), "finite": finite}
        return {"step": state["step"] + 1, "params": params, "opt_state": opt_state}, metrics

    return update


STRATEGIES = ("vmap", "unroll", "map", "hybrid")


def default_strategy() -> str:
    """How ``train_many`` runs its K models in one program on this backend: ``unroll`` on
    CPUs, ``hybrid`` elsewhere, the fastest measured on each.

    - ``hybrid``: ``vmap`` for everything but the convolutions, which (forward and both
      gradients) run model by model with the single-model kernels
      (:func:`jaxvis.layers.per_model_convolutions`): one copy of the rest of the step to
      compile.
    - ``vmap``: one batched step; per-model kernels become grouped convolutions, which
      XLA:CPU runs slowly.
    - ``unroll``: the K steps written out one after another in one program; XLA overlaps
      them (the best steady rate on CPUs) but compiles K copies of the step.
    - ``map``: ``jax.lax.map`` over the models; one step to compile, slow on CPUs.

    8 mnist_cnn models, time against 8 sequential runs (``scripts/bench_train.py``,
    README "Benchmarks"): 2 CPU cores, 100 steps: unroll 0.65x, hybrid 0.72x (10 steps,
    where compilation weighs more: hybrid 0.66x, unroll 0.77x, vmap 3.05x); H100, 1000
    steps: hybrid 0.20x, map 0.20x, vmap 0.25x, unroll 0.36x. ``unroll`` and ``hybrid``
    evaluate with the single-model evaluator, model by model.
    """
    return "unroll" if jax.default_backend() == "cpu" else "hybrid"


def _over_models(fn, strategy: str):
    """``fn`` over a leading model axis of every argument, by ``strategy`` (:func:`default_strategy`)."""
    if strategy == "vmap":
        return jax.vmap(fn)
    if strategy == "map":
        return lambda *args: jax.lax.map(lambda a: fn(*a), args)
    if strategy == "hybrid":
        vmapped = jax.vmap(fn)

        def hybrid(*args):
            with layers.per_model_convolutions():
                return vmapped(*args)

        return hybrid

    return lambda *args: _per_model(fn, args, ())


def _per_model(fn, mapped: tuple, shared: tuple):
    """``fn(*mapped[k], *shared)`` for each model ``k`` of the leading axis of ``mapped``,
    one call after another, the results stacked."""
    count = jax.tree.leaves(mapped)[0].shape[0]
    outs = [fn(*jax.tree.map(lambda a: a[k], mapped), *shared) for k in range(count)]
    return jax.tree.map(lambda *parts: jnp.stack(parts), *outs)


@functools.lru_cache(maxsize=16)
def _evaluator(model: models.Model, stacked: bool, strategy: str = "vmap"):
    """The jitted sums of loss, top-1 and top-5 hits of one padded batch (compiled once per model)."""
    k = min(5, model.num_classes)

    def evaluate_batch(params, images, labels_N, mask_N):
        flat_NHWC = images.reshape(-1, *images.shape[-3:])
        logits, _ = model.apply(params, model.normalize(flat_NHWC))
        logp_NK = jax.nn.log_softmax(logits)
        if images.ndim == 5:  # crops: average the probabilities
            n, crops = images.shape[:2]
            logp_NK = jax.nn.logsumexp(logp_NK.reshape(n, crops, -1), axis=1) - jnp.log(crops)
        nll_N = -jnp.take_along_axis(logp_NK, labels_N[:, None], axis=1)[:, 0]
        hits_Nk = jax.lax.top_k(logp_NK, k)[1] == labels_N[:, None]
        return {"loss": jnp.sum(nll_N * mask_N), "top1": jnp.sum(hits_Nk[:, 0] * mask_N),
                "top5": jnp.sum(jnp.any(hits_Nk, axis=1) * mask_N), "count": jnp.sum(mask_N)}

    if not stacked:
        return jax.jit(evaluate_batch)
    if strategy in ("unroll", "hybrid"):
        # model by model with the single-model program: its compile is a K-th of an unrolled one's
        single = _evaluator(model, False)

        return lambda params, *batch: _per_model(single, (params,), batch)
    over = _over_models(lambda params, *batch: evaluate_batch(params, *batch), strategy)
    return jax.jit(lambda params, *batch: over(params, *(
        jnp.broadcast_to(b, (jax.tree.leaves(params)[0].shape[0], *b.shape)) for b in batch)))


# ---------------------------------------------------------------------------------------
# Devices


def data_mesh(num_devices: int | None = None) -> Mesh:
    """A 1-D mesh with axis ``data`` over all devices (of all hosts), or the first ``num_devices``
    (over several processes, as many of each)."""
    _checks.count("num_devices", num_devices, optional=True)
    devices = jax.devices()
    if num_devices is not None:
        if not 1 <= num_devices <= len(devices):
            raise ValueError(f"num_devices must be in [1, {len(devices)}] (the devices JAX sees), got {num_devices}")
        devices = devices[:num_devices]
    per_process = [sum(d.process_index == p for d in devices) for p in range(jax.process_count())]
    if len(set(per_process)) > 1:  # each process feeds its devices an equal share of each batch
        hint = ("num_devices=None uses all" if num_devices is not None
                else "give every process the same number of devices")
        raise ValueError(f"num_devices={num_devices} would use {per_process} devices of the {len(per_process)} "
                         f"processes, but each process must give the same number; {hint}")
    return Mesh(np.asarray(devices), ("data",))


def _put(mesh: Mesh, local, batch_axis: int = 0) -> jax.Array:
    """This host's share of a global batch, split along ``batch_axis`` over the mesh."""
    spec = PartitionSpec(*[None] * batch_axis, "data")
    return jax.make_array_from_process_local_data(NamedSharding(mesh, spec), np.asarray(local))


def _check_divides(what: str, size: int, mesh: Mesh) -> None:
    if size % mesh.size:
        raise ValueError(f"{what} {size} must divide by the number of devices ({mesh.size}) that share each batch")


# ---------------------------------------------------------------------------------------
# Evaluation


def evaluate(model: models.Model, params: models.Params, batches: data.Batches, *, mesh: Mesh | None = None,
             stacked: bool = False, strategy: str | None = None) -> dict[str, Any]:
    """Mean loss, top-1 and top-5 accuracy over ``batches`` (10-crop batches average the crops).

    ``stacked``: ``params`` has a leading model axis; each metric is then a list per model,
    computed by ``strategy`` (see :func:`default_strategy`; ``unroll`` and ``hybrid`` run
    the single-model evaluator once per model).
    """
    if not isinstance(batches, data.Batches):
        raise ValueError(f"batches must be jaxvis.data.Batches (dataset.batches(size) or data.load(...)), got "
                         f"{type(batches).__name__}")
    strategy = strategy or default_strategy()
    _checks.choice("strategy", strategy, STRATEGIES)
    mesh = mesh or data_mesh()
    _check_divides("the evaluation batch size", batches.batch_size, mesh)
    evaluate_batch = _evaluator(model, stacked, strategy)
    local_size = batches.batch_size // batches.shard[1]
    totals = None
    for images, labels in batches:
        pad = local_size - len(labels)
        mask = np.arange(local_size) < len(labels)
        images = np.concatenate([images, np.zeros((pad, *images.shape[1:]), images.dtype)])
        labels = np.concatenate([labels, np.zeros(pad, labels.dtype)])
        sums = evaluate_batch(params, _put(mesh, images), _put(mesh, labels), _put(mesh, mask.astype(np.float32)))
        totals = sums if totals is None else jax.tree.map(jnp.add, totals, sums)
    totals = jax.device_get(totals)
    count = totals.pop("count")
    return {k: (v / count).tolist() for k, v in totals.items()}


# ---------------------------------------------------------------------------------------
# The training loop


class _MetricsLog:
    """``metrics.jsonl``: one JSON object a line. A resumed run drops the lines past its
    start (and a line a kill cut short), and writes no second record of a step and split."""

    def __init__(self, path: Path, start_step: int, enabled: bool):
        self.path, self.enabled, self.logged = path, enabled, set()
        if enabled and path.exists():
            kept = [r for r in _records(path) if r["step"] <= start_step]
            self.logged = {(r["step"], r["split"]) for r in kept}
            write_text_atomically(path, "".join(json.dumps(r) + "\n" for r in kept))

    def has(self, step: int, split: str) -> bool:
        return (step, split) in self.logged

    def write(self, **record) -> None:
        if self.enabled and not self.has(record["step"], record["split"]):
            self.logged.add((record["step"], record["split"]))
            with open(self.path, "a") as f:
                f.write(json.dumps(record) + "\n")


def _records(path: Path) -> list[dict[str, Any]]:
    """The complete records of a metrics log; a line that is not JSON (cut short by a kill) is left out."""
    records = []
    for line in path.read_text().splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return records


def read_metrics(workdir) -> list[dict[str, Any]]:
    """The records of a run's ``metrics.jsonl``, in order."""
    path = folder(workdir, "workdir", create=False) / METRICS_FILE
    if not path.is_file():
        raise ValueError(f"{workdir} has no {METRICS_FILE}: expected the workdir of a training run")
    return _records(path)


def train_and_evaluate(config: Config, workdir, *, data_dir=None, progress: bool = True) -> dict[str, Any]:
    """Train ``config`` in ``workdir``, resuming from its latest checkpoint, and evaluate.

    Args:
      config: the experiment (see :mod:`jaxvis.configs`).
      workdir: holds ``checkpoints/`` and ``metrics.jsonl``.
      data_dir: where the dataset is (see :func:`jaxvis.data.load`).
      progress: show a progress bar.

    Returns:
      ``{"params", "eval", "train", "step", "train_seconds", "data"}``: the final
      parameters, the final evaluation (``loss``, ``top1``, ``top5``), the mean training
      loss and accuracy since the last log line, the step reached, the seconds this call
      took, and where the training and evaluation examples came from.

    Raises:
      FloatingPointError: the loss or the parameters stopped being finite; the message
        names the step, and the checkpoints on disk are the last good ones.
    """
    return _train(config, workdir, None, data_dir, progress)


def train_many(config: Config, workdir, seeds, *, data_dir=None, progress: bool = True,
               strategy: str | None = None) -> dict[str, Any]:
    """Train one model per seed in one program; see :func:`train_and_evaluate`.

    Model ``k`` gets the initialization, data order and dropout of
    ``train_and_evaluate(config with seed=seeds[k])``. Parameters come with a leading
    model axis, and the metrics as lists, one entry per seed. ``strategy``: ``hybrid``,
    ``vmap``, ``unroll`` or ``map``, how each step runs the models (default and figures:
    :func:`default_strategy`); all give the same result.
    """
    seeds = _seeds(seeds)
    strategy = strategy or default_strategy()
    _checks.choice("strategy", strategy, STRATEGIES)
    return _train(config, workdir, seeds, data_dir, progress, strategy)


def _train(config: Config, workdir, seeds: tuple[int, ...] | None, data_dir, progress: bool,
           strategy: str = "vmap") -> dict[str, Any]:
    _check_config(config)
    workdir = folder(workdir, "workdir", create=False)
    stacked = seeds is not None
    seeds = seeds if stacked else (config.seed,)
    model = config.build_model()
    train_ds = data.open_dataset(config.dataset, config.train_split, data_dir=data_dir, image_size=config.image_size)
    eval_ds = data.open_dataset(config.dataset, config.eval_split, data_dir=data_dir, image_size=config.image_size)
    steps_per_epoch = train_ds.num_examples // config.batch_size
    if steps_per_epoch == 0:
        raise ValueError(f"batch_size {config.batch_size} exceeds the {train_ds.num_examples} training examples")
    total_steps = config.num_epochs * steps_per_epoch
    stop = min(total_steps, config.max_steps or total_steps)
    if train_ds.class_names and len(train_ds.class_names) != model.num_classes:
        raise ValueError(f"model {model.name} has {model.num_classes} outputs, but {train_ds.where} has "
                         f"{len(train_ds.class_names)} classes ({', '.join(train_ds.class_names[:3])}, ...)")
    mesh = data_mesh(config.num_devices)
    _check_divides("batch_size", config.batch_size, mesh)
    _check_divides("the evaluation batch size", config.eval_batch_size, mesh)
    shard = (jax.process_index(), jax.process_count())
    replicated = NamedSharding(mesh, PartitionSpec())
    tx = make_optimizer(config, steps_per_epoch)
    schedule = make_schedule(config, steps_per_epoch)

    def init(seed):
        params = model.init(jax.random.fold_in(jax.random.key(seed), 0))
        return {"step": jnp.zeros((), jnp.int32), "params": params, "opt_state": tx.init(params)}

    def dropout_key(seed):
        return jax.random.fold_in(jax.random.key(seed), 1)

    update = _make_update(model, tx, config.filter_radius)
    seeds_array = np.asarray(seeds if stacked else seeds[0])
    if stacked:
        init, dropout_key, update = jax.vmap(init), jax.vmap(dropout_key), _over_models(update, strategy)
    update = jax.jit(update, donate_argnums=0, out_shardings=(replicated, replicated))

    card = checkpoint_card(config, seeds if stacked else None)
    ckpt = checkpoint.Checkpointer(workdir / "checkpoints", card, keep=config.keep_checkpoints)
    keys = jax.jit(dropout_key, out_shardings=replicated)(seeds_array)
    like = jax.eval_shape(init, seeds_array)  # only the shapes: no initializer to compile when resuming
    try:
        start, restored = ckpt.restore_latest({"params": like["params"], "opt_state": like["opt_state"]}, replicated)
    except BaseException:
        ckpt.close()
        raise
    stop = max(stop, start)
    if start:
        state = {"step": jax.device_put(np.full(like["step"].shape, start, np.int32), replicated), **restored}
    else:
        state = jax.jit(init, out_shardings=replicated)(seeds_array)
    is_main = jax.process_index() == 0
    log = _MetricsLog(workdir / METRICS_FILE, start, is_main)
    bar = tqdm(total=stop, initial=start, unit="step", disable=not (progress and is_main), dynamic_ncols=True)
    began = time.perf_counter()
    batch_axis = 1 if stacked else 0

    def run_eval(step: int) -> dict[str, Any]:
        batches = eval_ds.batches(config.eval_batch_size, ten_crop=config.ten_crop_eval, shard=shard)
        metrics = evaluate(model, state["params"], batches, mesh=mesh, stacked=stacked, strategy=strategy)
        log.write(step=step, epoch=step / steps_per_epoch, split=config.eval_split, **metrics,
                  seconds=time.perf_counter() - began)
        return metrics

    def eval_due(step: int) -> bool:
        """Whether an epoch ends at ``step`` with an evaluation."""
        return step % steps_per_epoch == 0 and (step // steps_per_epoch) % config.eval_every_epochs == 0

    pending, window_start, train_metrics = [], time.perf_counter(), {}

    def flush(step: int) -> None:
        """Fetch the metrics of the steps since the last flush, stop on non-finite ones, log."""
        nonlocal pending, window_start, train_metrics
        fetched = jax.device_get(pending)
        first = step - len(fetched) + 1
        for i, m in enumerate(fetched):
            if not np.all(m["finite"]):
                diverged = [s for s, ok in zip(seeds, np.atleast_1d(m["finite"])) if not ok]
                good = ckpt.latest_step()
                where = ("No checkpoint was saved before it, so this workdir starts afresh when trained again"
                         if good is None else f"The last good checkpoint is step {good} in {ckpt.directory} (kept; "
                         "a run resumes only with its own settings, so use a new workdir for new ones)")
                raise FloatingPointError(
                    f"training diverged at step {first + i} (epoch {(first + i) / steps_per_epoch:.2f}, seeds "
                    f"{diverged}): the loss is {m['loss']} or the parameters are no longer finite. {where}. "
                    "Lower the learning rate (or set filter_radius) and train again")
        now = time.perf_counter()
        train_metrics = {k: np.mean([m[k] for m in fetched], axis=0).tolist() for k in ("loss", "accuracy")}
        log.write(step=step, epoch=step / steps_per_epoch, split="train", **train_metrics,
                  learning_rate=float(schedule(step - 1)),
                  images_per_second=len(fetched) * config.batch_size * len(seeds) / (now - window_start),
                  seconds=now - began)
        bar.set_postfix(loss=f"{np.mean(train_metrics['loss']):.4f}")
        pending, window_start = [], now

    try:
        step = start
        # a kill cut this evaluation short after the checkpoint before it; process 0 keeps
        # the log, and its answer holds for all, as an evaluation involves every process
        redo_eval = 0 < start < stop and eval_due(start) and not log.has(start, config.eval_split)
        if jax.process_count() > 1:
            redo_eval = bool(multihost_utils.broadcast_one_to_all(np.bool_(redo_eval)))
        if redo_eval:
            run_eval(start)
        while step < stop:
            epoch, offset = divmod(step, steps_per_epoch)
            epoch_batches = [train_ds.batches(config.batch_size, shuffle_seed=seed, epoch=epoch, skip=offset,
                                              drop_remainder=True, augment=config.augment, shard=shard)
                             for seed in seeds]
            for batch in zip(*epoch_batches):
                images, labels = (np.stack(parts) for parts in zip(*batch)) if stacked else batch[0]
                state, metrics = update(state, _put(mesh, images, batch_axis), _put(mesh, labels, batch_axis), keys)
                pending.append(metrics)
                step += 1
                bar.update()
                at_checkpoint = step % config.checkpoint_every_steps == 0 or step == stop
                at_epoch_end = step % steps_per_epoch == 0
                if at_checkpoint or at_epoch_end or step % config.log_every_steps == 0:
                    flush(step)
                if at_checkpoint:
                    ckpt.save(step, state)
                if step == stop:
                    break
                if eval_due(step):
                    run_eval(step)
        final = run_eval(stop)
    finally:
        bar.close()
        ckpt.close()
    return {"params": state["params"], "eval": final, "train": train_metrics, "step": stop,
            "train_seconds": time.perf_counter() - began, "data": {"train": train_ds.where, "eval": eval_ds.where}}
