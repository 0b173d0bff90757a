"""The strongest activations of each feature map across a dataset, and their projections
(Zeiler & Fergus Sec. 2.1 and Fig. 2).

:func:`top_k` streams a dataset batch by batch under ``jit`` and keeps, for every map of
a layer, the ``k`` largest activations with their image index and position: memory is
``O(channels * k)`` whatever the dataset's size. Ties go to the earlier example (lower
image index, then row, then column). ``one_per_image`` keeps at most one activation per
image and map (its maximum), which avoids a sheet of nine near-identical patches. The
result records what it was computed on (layer, model, input shape, number of images), so
that :func:`project_top_k` refuses to project it at another layer, through another model
or on other images.

A dataset too large for one process is mined in parts (:func:`top_k_parts`): fixed
consecutive runs of images, shared out over the processes of a ``jax.distributed`` job in
contiguous blocks, each part's result written to disk when finished (a rerun, with any
number of processes, reads it instead of computing it). :func:`merge` joins the parts
exactly: a map's ``k`` strongest over the whole are among the ``k`` strongest of their
part, and the candidates are laid out as one stream would meet them (part after part,
each part strongest first with equal values in stream order), so ``lax.top_k``, which keeps
the earlier of equal values, breaks ties as one stream does. Each process merges its own
parts, then the processes exchange their merged ``(C, k)`` value, image, row and column
arrays (16 bytes an entry: ``16 C k`` bytes a layer and process, whatever the number of
images) in one all-gather, and every process merges the same arrays in process order.
:func:`project_top_k_spread` shares a layer's maps out over the processes and all-gathers
the projections and patches (``2 k h w c`` floats a map, for a field of ``h x w x c``).

:func:`project_top_k` projects each of those activations alone (all others of the layer
zeroed) with the deconvnet rule, in batched ``vmap`` calls, and crops projection and
image patch to the unit's receptive field. A projection is zero outside the receptive
field and the unit's value depends only on the pixels inside it, so for a unit whose
field lies inside the image the projection is computed *on the field alone*, through a
copy of the network with every padding removed: exact, and for early layers a tiny
fraction of the full-image work. Units whose field reaches past the border run on the
smallest grid-aligned window of the image that holds the field's part inside it
(:func:`border_windows`; paddings kept, so the image's own border is reproduced), with
units of one window sharing its forward pass; the crop is zero outside the image. Calls
are batched to a memory budget, and only the last call of each shape is padded.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import json
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from jaxvis import _checks, distributed, rules
from jaxvis._io import folder as _folder
from jaxvis._io import write_atomically
from jaxvis.models import Model, Params
from jaxvis.project import Select, backward_bytes, project
from jaxvis.wrap import Wrapped


@functools.partial(jax.tree_util.register_dataclass, data_fields=["value", "image", "row", "col"],
                   meta_fields=["layer", "model", "input_shape", "num_images", "first"])
@dataclasses.dataclass(frozen=True)
class TopK:
    """The ``k`` strongest activations of each map, strongest first; each array ``(C, k)``.

    ``image`` indexes the dataset in the order it was streamed. ``layer``, ``model`` (its
    name), ``input_shape`` and ``num_images`` (how many images :func:`top_k` saw) say what
    the result belongs to; ``first`` is the index of the first of them (0 but for one part
    of a dataset, see :func:`merge`). They are static pytree metadata.
    """

    value: jax.Array
    image: jax.Array
    row: jax.Array
    col: jax.Array
    layer: str
    model: str
    input_shape: tuple[int, int, int]
    num_images: int
    first: int = 0


def _init(model: Model, layer: str, k: int) -> TopK:
    """The empty running top-k; ``num_images`` is set once the stream has ended (kept
    constant while streaming, so that the jitted step compiles once)."""
    channels = model.shapes[layer][-1]
    return TopK(jnp.full((channels, k), -jnp.inf, jnp.float32), jnp.full((channels, k), -1, jnp.int32),
                jnp.zeros((channels, k), jnp.int32), jnp.zeros((channels, k), jnp.int32), layer, model.name,
                tuple(model.input_shape), 0)


def _merge(state: TopK, act_NHWC, offset, k: int, one_per_image: bool) -> TopK:
    """Merge one batch's candidates into the running top-k (earlier entries win ties)."""
    n, h, w, c = act_NHWC.shape
    if one_per_image:
        flat_CNP = jnp.transpose(act_NHWC.reshape(n, h * w, c), (2, 0, 1))
        where_CN = jnp.argmax(flat_CNP, axis=2)
        values_CM = jnp.max(flat_CNP, axis=2)
        image_CM = jnp.broadcast_to(jnp.arange(n, dtype=jnp.int32).reshape(1, n), (c, n))
        pos_CM = where_CN.astype(jnp.int32)
    else:
        values_CM = jnp.transpose(act_NHWC.reshape(n * h * w, c))  # (C, N*H*W), row-major in (n, h, w)
        index = jnp.arange(n * h * w, dtype=jnp.int32)
        image_CM = jnp.broadcast_to((index // (h * w)).reshape(1, -1), (c, n * h * w))
        pos_CM = jnp.broadcast_to((index % (h * w)).reshape(1, -1), (c, n * h * w))
    # lax.top_k keeps the lower index among equal values, so the state goes first.
    values = jnp.concatenate([state.value, values_CM.astype(jnp.float32)], axis=1)
    images = jnp.concatenate([state.image, image_CM + offset], axis=1)
    rows = jnp.concatenate([state.row, pos_CM // w], axis=1)
    cols = jnp.concatenate([state.col, pos_CM % w], axis=1)
    best, image, row, col = _best(values, images, rows, cols, k)
    return dataclasses.replace(state, value=best, image=image, row=row, col=col)


def _best(value_CM, image_CM, row_CM, col_CM, k: int):
    """The ``k`` largest of each row, strongest first, the earlier candidate winning ties."""
    best, keep = jax.lax.top_k(value_CM, k)
    take = functools.partial(jnp.take_along_axis, indices=keep, axis=1)
    return best, take(image_CM), take(row_CM), take(col_CM)


@functools.partial(jax.jit, static_argnames=("model", "layers", "k", "one_per_image"))
def _step(model, params, states, x_NHWC, offset, layers, k, one_per_image):
    _, trace = model.apply(params, x_NHWC, until=_deepest(model, layers))
    return {layer: _merge(states[layer], trace.activations[layer], offset, k, one_per_image) for layer in layers}


def _deepest(model: Model, layers: tuple[str, ...]) -> str:
    return max(layers, key=model.names.index)


def _layer_names(model: Model, layers: str | Iterable[str], k: int, one_per_image: bool) -> tuple[str, ...]:
    """``layers`` as a tuple of checked spatial layer names (and ``k``, ``one_per_image`` checked)."""
    names = (layers,) if isinstance(layers, str) else tuple(layers)
    if not names:
        raise ValueError("top_k needs at least one layer, got none")
    for name in names:
        model.check_layer(name, spatial=True)
    _checks.count("k", k)
    if not isinstance(one_per_image, (bool, np.bool_)):
        raise ValueError(f"one_per_image must be True or False, got {type(one_per_image).__name__} {one_per_image!r}")
    return names


def _check_enough(model: Model, names: tuple[str, ...], k: int, seen: int, one_per_image: bool) -> None:
    for name in names:
        h, w, _ = model.shapes[name]
        available = seen if one_per_image else seen * h * w
        if k > available:
            raise ValueError(f"k={k} is larger than the {available} positions of layer {name!r} in the data "
                             f"({seen} images{'' if one_per_image else f' x {h}x{w}'})")


def top_k(model: Model, params: Params, batches: Iterable, layers: str | Iterable[str], k: int = 9,
          one_per_image: bool = False, first: int | None = None) -> dict[str, TopK] | TopK:
    """The ``k`` strongest activations of every map of ``layers`` over a dataset.

    Args:
      model, params: the network.
      batches: iterable of ``images_NHWC`` or ``(images_NHWC, labels)``; uint8 pixels are
        normalized with ``model.normalize``, float images are taken as normalized.
      layers: one layer name (returns a :class:`TopK`) or several (returns a dict); all
        are computed in one forward pass per batch.
      k: activations kept per map.
      one_per_image: keep at most one activation per image and map.
      first: None when ``batches`` are the whole dataset; otherwise they are one part of
        it, starting at image ``first`` (image indices count from there, and :func:`merge`
        joins the parts). A part may hold fewer than ``k`` candidates of a map: the rest
        are ``-inf`` at image ``-1``, which lose to any activation when parts are merged.
    """
    single = isinstance(layers, str)
    names = _layer_names(model, layers, k, one_per_image)
    _checks.count("first", first, minimum=0, optional=True)
    start = first or 0
    states = {name: _init(model, name, k) for name in names}
    seen = 0
    if isinstance(batches, (str, bytes)) or not isinstance(batches, Iterable) or hasattr(batches, "shape"):
        raise ValueError(f"batches must be an iterable of image batches (N, {', '.join(map(str, model.input_shape))}),"
                         f" e.g. [images] or dataset.batches(256), got {type(batches).__name__} of shape "
                         f"{np.shape(batches) if hasattr(batches, 'shape') else '?'}")
    for batch in batches:
        images = batch[0] if isinstance(batch, (tuple, list)) else batch
        dtype = images.dtype if hasattr(images, "dtype") else np.asarray(images).dtype
        x = model.normalize(images) if dtype == np.uint8 else images
        _checks.images(x, model.input_shape)
        x = jnp.asarray(x)
        states = _step(model, params, states, x, jnp.int32(start + seen), names, k, one_per_image)
        seen += x.shape[0]
    if seen == 0:
        raise ValueError("top_k got an empty dataset (no batches)")
    if first is None:
        _check_enough(model, names, k, seen, one_per_image)
    states = {name: dataclasses.replace(state, num_images=seen, first=start) for name, state in states.items()}
    return states[names[0]] if single else states


def merge(parts: Sequence[TopK]) -> TopK:
    """The top-k of consecutive parts of a dataset from each part's (:func:`top_k` with
    ``first``), equal to :func:`top_k` on the whole: the same entries in the same order,
    ties going to the earlier image, then row, then column (see the module docstring).

    Args:
      parts: one layer's results of consecutive parts, in dataset order (each part's
        ``first`` is where the one before it ends); a part of no images is allowed.
    """
    if isinstance(parts, TopK) or not isinstance(parts, Sequence) or not parts \
            or not all(isinstance(p, TopK) for p in parts):
        raise ValueError(f"parts must be a non-empty list of TopK results (one per part, in dataset order), got "
                         f"{type(parts).__name__}")
    head = parts[0]
    for i, part in enumerate(parts[1:], 1):
        if (part.layer, part.model, tuple(part.input_shape)) != (head.layer, head.model, tuple(head.input_shape)) \
                or np.shape(part.value) != np.shape(head.value):
            raise ValueError(f"parts must be one layer's results with one k: part 0 holds {head.model} layer "
                             f"{head.layer!r} {np.shape(head.value)}, part {i} {part.model} layer {part.layer!r} "
                             f"{np.shape(part.value)}")
        end = parts[i - 1].first + parts[i - 1].num_images
        if part.first != end:
            raise ValueError(f"parts must be consecutive, in dataset order: part {i - 1} ends before image {end}, "
                             f"but part {i} starts at image {part.first}")
    if len(parts) == 1:
        return head
    joined = [jnp.concatenate([jnp.asarray(getattr(p, f)) for p in parts], axis=1)
              for f in ("value", "image", "row", "col")]
    value, image, row, col = _best_jitted(*joined, k=np.shape(head.value)[1])
    return TopK(value, image, row, col, head.layer, head.model, tuple(head.input_shape),
                sum(p.num_images for p in parts), head.first)


_best_jitted = jax.jit(_best, static_argnames="k")
_FIELDS = ("value", "image", "row", "col")


def _read_part(path: Path, names: tuple[str, ...], record: dict) -> dict[str, TopK] | None:
    """A finished part's results, or None if there is none; a part recorded for other
    settings, or damaged, is a ``ValueError`` that names it."""
    if not path.exists():
        return None
    try:
        with np.load(path) as f:
            found = json.loads(str(f["record"]))
            arrays = {name: [f[f"{name}.{field}"] for field in _FIELDS] for name in found["layers"]}
    except Exception as err:
        raise ValueError(f"part {path} is damaged ({type(err).__name__}: {err}); delete it and run again to "
                         "compute it again") from err
    if found != record:
        changed = sorted(key for key in record.keys() | found.keys() if record.get(key) != found.get(key))
        raise ValueError(f"part {path} was computed with other settings ({', '.join(changed)}); use another "
                         f"folder, or delete {path.parent} to start again")
    return {name: TopK(*arrays[name], name, record["model"], tuple(record["input_shape"]), record["num_images"],
                       record["first"]) for name in names}


def _write_part(path: Path, tops: dict[str, TopK], record: dict) -> None:
    arrays = {f"{name}.{field}": np.asarray(getattr(top, field)) for name, top in tops.items() for field in _FIELDS}
    write_atomically(path, lambda f: np.savez(f, record=np.asarray(json.dumps(record)), **arrays))


def top_k_parts(model: Model, params: Params, read: Callable[[int, int], Iterable], num_images: int,
                layers: str | Iterable[str], k: int = 9, one_per_image: bool = False, part_size: int = 5120,
                folder=None, tag: str = "") -> dict[str, TopK] | TopK:
    """:func:`top_k` over a dataset in parts, shared out over the processes of a
    ``jax.distributed`` job (one process takes every part), resumable; every process gets
    the whole result, equal to :func:`top_k` over the same batches in one stream.

    Args:
      read: ``read(start, stop)`` gives the batches of images ``start`` to ``stop - 1``, in
        order (as :func:`top_k` takes them); it is called once per part this process
        computes.
      num_images: the dataset's size.
      layers, k, one_per_image: as for :func:`top_k`.
      part_size: images per part; the parts are fixed by it, not by the number of processes.
      folder: where each finished part is written (``part_00000.npz``, ..., atomically); a
        later call, with any number of processes, reads a finished part instead of
        computing it. A part recorded with other settings is refused. None: kept in memory.
      tag: what else decides a part's result and is not an argument here (the data, how
        ``read`` batches it), recorded with each part.
    """
    single = isinstance(layers, str)
    names = _layer_names(model, layers, k, one_per_image)
    _checks.count("num_images", num_images)
    _checks.count("part_size", part_size)
    if not callable(read):
        raise ValueError(f"read must be a function read(start, stop) giving batches, got {type(read).__name__}")
    if not isinstance(tag, str):
        raise ValueError(f"tag must be a string, got {type(tag).__name__} {tag!r}")
    _check_enough(model, names, k, num_images, one_per_image)
    where = None if folder is None else _folder(folder, "the parts' folder")
    base = {"model": model.name, "input_shape": list(model.input_shape), "layers": list(names), "k": k,
            "one_per_image": bool(one_per_image), "params": distributed.fingerprint(params), "tag": tag,
            "part_size": part_size}
    mine = distributed.share(-(-num_images // part_size))
    results = []
    for part in mine:
        first, stop = part * part_size, min((part + 1) * part_size, num_images)
        record = base | {"first": first, "num_images": stop - first}
        path = None if where is None else where / f"part_{part:05d}.npz"
        tops = None if path is None else _read_part(path, names, record)
        if tops is None:
            tops = top_k(model, params, read(first, stop), names, k, one_per_image, first=first)
            if tops[names[0]].num_images != stop - first:
                raise ValueError(f"read({first}, {stop}) gave {tops[names[0]].num_images} images; expected "
                                 f"{stop - first}")
            if path is not None:
                _write_part(path, tops, record)
        results.append(tops)
    start = min(mine.start * part_size, num_images)
    mine_merged = {name: merge([r[name] for r in results]) if results else
                   dataclasses.replace(_init(model, name, k), first=start) for name in names}
    span = np.asarray([mine_merged[names[0]].first, sum(r[names[0]].num_images for r in results)], np.int32)
    gathered = distributed.allgather(({name: tuple(getattr(t, f) for f in _FIELDS) for name, t in mine_merged.items()},
                                      span), "top-k exchange")
    arrays, spans = gathered
    tops = {name: merge([TopK(*(a[p] for a in arrays[name]), name, model.name, tuple(model.input_shape),
                              int(spans[p, 1]), int(spans[p, 0])) for p in range(len(spans))]) for name in names}
    return tops[names[0]] if single else tops


# ---------------------------------------------------------------------------------------
# Projections of the top activations, cropped to the receptive field


@dataclasses.dataclass(frozen=True)
class Patches:
    """Per map and rank, the projection and the image patch over the unit's receptive
    field, each ``(M, k, size_h, size_w, channels)`` for the ``M`` maps in ``maps``;
    outside the image both are zero."""

    maps: np.ndarray
    projection: np.ndarray
    patch: np.ndarray
    window: np.ndarray  # (C, k, 4): top, left, height, width in the image


def field_model(model: Model, layer: str) -> Model:
    """The network up to ``layer`` on an input the size of one unit's receptive field,
    with every padding removed: its single output unit is any interior unit of ``layer``."""
    size = model.receptive_field(layer).size
    head = model.layers[:model.names.index(layer) + 1]
    valid = tuple(dataclasses.replace(spec, padding=((0, 0), (0, 0))) if spec.windowed else spec for spec in head)
    return Model(f"{model.name}[{layer} field]", valid, (*size, model.input_shape[2]), model.mean, model.std)


def window_model(model: Model, layer: str, side: tuple[int, int] | None = None) -> Model:
    """The network up to ``layer``, paddings kept, on a window of the image: for units
    whose receptive field crosses the image border.

    A window of side ``S`` (per axis) with ``H - S`` a multiple of the layer's jump ``J``,
    starting at a multiple of ``J`` (or at ``H - S``), lines up with every layer's grid, so
    each unit the target depends on has the same inputs in the window as in the image,
    provided the window's edges fall either on the image's edges (where the network pads
    too) or outside the unit's field. ``side`` defaults to the smallest such window that
    holds any unit's field (at least ``size + J - 1``); :func:`border_windows` gives each
    unit the smallest one that holds its field's part inside the image.
    """
    field = model.receptive_field(layer)
    if side is None:
        side = tuple(_allowed_side(h, jump, size + jump - 1) for h, jump, size in
                     zip(model.input_shape[:2], field.jump, field.size))
    elif (not isinstance(side, (tuple, list)) or len(side) != 2
          or not all(isinstance(v, (int, np.integer)) and 1 <= v <= h for v, h in zip(side, model.input_shape))):
        raise ValueError(f"side must be (height, width), integers from 1 to the image's "
                         f"{tuple(model.input_shape[:2])}, got {side!r}")
    head = model.layers[:model.names.index(layer) + 1]
    return Model(f"{model.name}[{layer} window {side[0]}x{side[1]}]", head, (*side, model.input_shape[2]),
                 model.mean, model.std)


def _allowed_side(h: int, jump: int, least: int) -> int:
    """The smallest window side ``>= least`` that leaves ``h - side`` a multiple of ``jump`` (or ``h``)."""
    return h if least >= h else h - ((h - least) // jump) * jump


def _side_ladder(h: int, jump: int, size: int, fractions: tuple[float, ...]) -> np.ndarray:
    """Window sides, ascending: the side that holds any unit's field (:func:`window_model`'s
    default) and about ``fractions`` of it."""
    full = _allowed_side(h, jump, size + jump - 1)
    return np.unique([_allowed_side(h, jump, max(1, math.ceil(f * full))) for f in fractions] + [full])


def border_windows(model: Model, layer: str, tops, lefts, fractions: tuple[float, ...] | None = None
                   ) -> tuple[np.ndarray, ...]:
    """Per unit (receptive field at ``tops``, ``lefts``), a window of the image that holds
    the field's part inside the image, as :func:`window_model` requires: ``(start_h,
    start_w, side_h, side_w)``.

    Sides come from a short ladder, so that few shapes compile: the side that holds any
    unit's field and about ``fractions`` of it. The default, ``(0.5, 0.7)`` on CPUs,
    gives units cut by the border smaller windows; on accelerators it is ``()`` (one
    side), since there the calls' fixed costs outweigh the arithmetic saved.
    """
    if fractions is None:
        fractions = (0.5, 0.7) if jax.default_backend() == "cpu" else ()
    if not all(isinstance(f, (int, float)) and 0 < f <= 1 for f in fractions):
        raise ValueError(f"fractions must be numbers in (0, 1], got {tuple(fractions)!r}")
    field = model.receptive_field(layer)
    tops, lefts = np.asarray(tops), np.asarray(lefts)
    if tops.shape != lefts.shape or tops.ndim != 1 or tops.dtype.kind not in "iu" or lefts.dtype.kind not in "iu":
        raise ValueError(f"tops and lefts must be integer vectors of one length, one entry per unit, got "
                         f"{tops.dtype} {tops.shape} and {lefts.dtype} {lefts.shape}")
    out = []
    for v, h, jump, size in zip((tops, lefts), model.input_shape[:2], field.jump, field.size):
        start = (np.maximum(v, 0) // jump) * jump
        end = np.where(v + size >= h, h, h - ((h - np.minimum(v + size, h)) // jump) * jump)
        ladder = _side_ladder(h, jump, size, fractions)
        side = ladder[np.searchsorted(ladder, end - start)]
        out.append((np.minimum(start, h - side), side))
    (s_h, side_h), (s_w, side_w) = out
    return s_h, s_w, side_h, side_w


def _crop(x_HWC, top, left, size):
    """A ``size`` window at (top, left), zero where it leaves the image."""
    h, w = x_HWC.shape[:2]
    padded = jnp.pad(x_HWC, ((size[0], size[0]), (size[1], size[1]), (0, 0)))
    return jax.lax.dynamic_slice(padded, (top + size[0], left + size[1], 0), (*size, x_HWC.shape[2]))


@functools.lru_cache(maxsize=None)
def _crops(size: tuple[int, int]):
    """Jitted, vmapped :func:`_crop` for one ``size``, built once (not per call)."""
    return jax.jit(jax.vmap(functools.partial(_crop, size=size)))


@functools.partial(jax.jit, static_argnames=("model", "layer", "rule"))
def _project_fields(model, params, crops_BHWC, channels_B, layer, rule):
    select = Select.unit(channels_B, jnp.zeros_like(channels_B), jnp.zeros_like(channels_B))
    return jax.vmap(functools.partial(project, model, params, layer=layer, rule=rule))(crops_BHWC, select=select)


@functools.partial(jax.jit, static_argnames=("model", "layer", "rule"))
def _project_units(model, params, x_BHWC, channels_B, rows_B, cols_B, layer, rule):
    select = Select.unit(channels_B, rows_B, cols_B)
    return jax.vmap(functools.partial(project, model, params, layer=layer, rule=rule))(x_BHWC, select=select)


@functools.partial(jax.jit, static_argnames=("model", "layer", "rule", "size"))
def _project_shared(model, params, x_GHWC, channels_GP, rows_GP, cols_GP, tops_GP, lefts_GP, layer, rule, size):
    """G windows, P units each: the inner vmap leaves the window unbatched, so its forward
    pass (switches, ReLU masks) runs once and only the P backward passes are batched."""
    def one_window(x_HWC, channels_P, rows_P, cols_P, tops_P, lefts_P):
        full = jax.vmap(lambda s: project(model, params, x_HWC, layer, s, rule))(
            Select.unit(channels_P, rows_P, cols_P))
        return jax.vmap(functools.partial(_crop, size=size))(full, tops_P, lefts_P)

    return jax.vmap(one_window)(x_GHWC, channels_GP, rows_GP, cols_GP, tops_GP, lefts_GP)


def _groups(keys_NK: np.ndarray, sizes=(8, 4, 2, 1)) -> dict[int, np.ndarray]:
    """The rows of ``keys_NK`` with equal keys, split into groups of exactly ``P`` rows for
    ``P`` in ``sizes`` (a run of 7 equal keys: 4 + 2 + 1), as ``{P: indices (G, P)}``: no
    padding, and one compiled shape per group size."""
    order = np.lexsort(keys_NK.T[::-1])
    keys = keys_NK[order]
    starts = np.flatnonzero(np.r_[True, np.any(keys[1:] != keys[:-1], axis=1)])
    groups: dict[int, list] = {p: [] for p in sizes}
    for run in np.split(order, starts[1:]):
        for p in sizes:
            while len(run) >= p:
                groups[p].append(run[:p])
                run = run[p:]
    return {p: np.stack(g) for p, g in groups.items() if g}


def _chunks(ids: np.ndarray, most: int):
    """``ids`` (along axis 0) in calls of ``most``, the last one padded by repeating its
    last entry up to a multiple of an eighth of the next power of two (at most ``most``):
    few compiled shapes (8 per octave), and at most 1/8 of one call wasted. Yields
    ``(part, padded)``."""
    for start in range(0, len(ids), most):
        part = ids[start:start + most]
        step = max(1, (1 << (len(part) - 1).bit_length()) // 8)
        size = min(most, -(-len(part) // step) * step)
        yield part, np.concatenate([part, np.repeat(part[-1:], size - len(part), axis=0)])


def _fitting(net: Model, layer: str, budget: float, most: int = 256) -> int:
    """How many projections through ``net`` up to ``layer`` fit ``budget`` bytes."""
    return int(np.clip(budget // backward_bytes(net, layer), 1, most))


def check_top(model: Model, top: TopK, layer: str, images) -> None:
    """Raise unless ``top`` is :func:`top_k`'s result for ``layer`` of ``model`` on ``images``
    (their number; every image index in range)."""
    if not isinstance(top, TopK):
        raise ValueError(f"top must be a TopK from topk.top_k, got {type(top).__name__}")
    if top.layer != layer:
        raise ValueError(f"top holds the activations of layer {top.layer!r}; expected layer {layer!r}, the layer "
                         "to project (compute top_k at that layer)")
    if (top.model, tuple(top.input_shape)) != (model.name, tuple(model.input_shape)):
        raise ValueError(f"top was computed with model {top.model!r} on inputs {tuple(top.input_shape)}; expected "
                         f"model {model.name!r} on inputs {tuple(model.input_shape)}")
    if tuple(np.shape(top.value)) != (model.shapes[layer][-1], np.shape(top.value)[-1]):
        raise ValueError(f"top must have one row per map of layer {layer!r}, shape ({model.shapes[layer][-1]}, k); "
                         f"got {tuple(np.shape(top.value))}")
    if not hasattr(images, "__len__") or not hasattr(images, "__getitem__"):
        raise ValueError(f"images must be an array or a jaxvis.data.Dataset, got {type(images).__name__}")
    if top.first != 0:
        raise ValueError(f"top holds images {top.first} to {top.first + top.num_images - 1} only, one part of a "
                         "dataset; expected the whole dataset's (join the parts with topk.merge)")
    if len(images) != top.num_images:
        raise ValueError(f"top_k saw {top.num_images} images; expected the same images here, got {len(images)}")
    image_ids = np.asarray(top.image)
    if (image_ids < 0).any() or (image_ids >= top.num_images).any():
        raise ValueError(f"top refers to images {image_ids[(image_ids < 0) | (image_ids >= top.num_images)][:5].tolist()}"
                         f"; expected indices in [0, {top.num_images})")


def _checked_maps(model: Model, images, top: TopK, layer: str, maps, rule: str, chunk, memory_budget) -> np.ndarray:
    """:func:`project_top_k`'s arguments checked; the maps to project as int32."""
    model.check_layer(layer, spatial=True)
    check_top(model, top, layer, images)
    maps = np.arange(top.value.shape[0]) if maps is None else np.asarray(list(maps))
    if maps.ndim != 1 or not maps.size:
        raise ValueError(f"maps must be a non-empty list of map indices of layer {layer!r}, got {maps.tolist()!r}")
    _checks.index(f"maps of layer {layer!r}", maps, top.value.shape[0])
    _checks.choice("rule", rule, rules.RULES)
    _checks.count("chunk", chunk, optional=True)
    _checks.number("memory_budget", memory_budget, 1.0)
    return maps.astype(np.int32)


def project_top_k(model: Model, params: Params, images, top: TopK, layer: str, maps=None,
                  rule: str = "deconvnet", chunk: int | None = None, memory_budget: float = 1e9) -> Patches:
    """Project every activation of ``top`` alone and crop it to its receptive field.

    Args:
      images: the examples ``top`` was computed on, all of them (``top.num_images``),
        indexable by ``top.image`` (uint8 pixels or normalized floats, HWC each): an array
        or a ``jaxvis.data.Dataset``.
      top: :func:`top_k`'s result for ``layer`` of ``model`` on ``images``; another
        layer's, model's or number of images' is refused.
      maps: which maps to project (default all), in the order given.
      chunk: projections per batched call; default: as many as fit ``memory_budget``
        bytes of activations (forward and backward, estimated from the layer shapes), at
        most 256. Units whose field lies inside the image run on the field alone, so their
        calls take many more projections than those of border units. A wrapped model
        (:func:`jaxvis.wrap`) has no layer tuple to cut down: its units are projected on
        the whole image and cropped (the same values, at a whole backward pass each).
    """
    maps = _checked_maps(model, images, top, layer, maps, rule, chunk, memory_budget)
    field = model.receptive_field(layer)
    channels, k = len(maps), top.value.shape[1]
    image_ids = np.asarray(top.image)[maps].ravel()
    chan = np.repeat(maps.astype(np.int32), k)
    rows, cols = np.asarray(top.row)[maps].ravel(), np.asarray(top.col)[maps].ravel()
    tops, lefts = field.start[0] + rows * field.jump[0], field.start[1] + cols * field.jump[1]
    h, w = model.input_shape[:2]
    inside = (tops >= 0) & (lefts >= 0) & (tops + field.size[0] <= h) & (lefts + field.size[1] <= w)
    if not isinstance(model, Wrapped) and any(len(inputs) > 1 for inputs in model.sources.values()):
        # Removing every padding (field_model) is exact along a chain only: over an addition
        # a padded branch would shrink and its shortcut not. Graphs run every unit on a
        # window of the image with its paddings (window_model), also exact.
        inside[:] = False

    def normalized(ids):
        batch = np.stack([np.asarray(images[int(i)][0] if isinstance(images[int(i)], tuple) else images[int(i)])
                          for i in ids])
        x = model.normalize(batch) if batch.dtype == np.uint8 else batch
        _checks.images(x, model.input_shape)
        return jnp.asarray(x)

    def chunks(ids, net):
        return _chunks(ids, chunk or _fitting(net, layer, memory_budget))

    out = np.zeros((channels * k, *field.size, model.input_shape[2]), np.float32)
    patches = np.zeros_like(out)
    crop = _crops(tuple(field.size))
    if isinstance(model, Wrapped):
        # no layer tuple to cut down to a field or window: each unit is projected on its
        # whole image and cropped to its field (exact: a projection is zero outside it)
        for part, padded in chunks(np.arange(channels * k), model):
            x = normalized(image_ids[padded])
            patches[part] = np.asarray(crop(x, tops[padded], lefts[padded]))[:len(part)]
            whole = _project_units(model, params, x, chan[padded], rows[padded], cols[padded], layer, rule)
            out[part] = np.asarray(crop(whole, tops[padded], lefts[padded]))[:len(part)]
        return _patches(maps, out, patches, tops, lefts, field, channels, k, model.input_shape[2])
    small = field_model(model, layer) if inside.any() else window_model(model, layer)
    head = {name: params[name] for name in small.names if name in params}  # the truncated networks' parameters
    for part, padded in chunks(np.flatnonzero(inside), small):
        crops = crop(normalized(image_ids[padded]), tops[padded], lefts[padded])
        patches[part] = np.asarray(crops)[:len(part)]
        out[part] = np.asarray(_project_fields(small, head, crops, chan[padded], layer, rule))[:len(part)]
    # units whose field crosses the border: the network with its paddings on an aligned
    # window; units in the same window of the same image share one forward pass
    border = np.flatnonzero(~inside)
    if not len(border):
        return _patches(maps, out, patches, tops, lefts, field, channels, k, model.input_shape[2])
    jump = np.asarray(field.jump)
    s_h, s_w, side_h, side_w = border_windows(model, layer, tops, lefts)
    patches[border] = np.concatenate([np.asarray(crop(normalized(image_ids[ids]), tops[ids], lefts[ids]))
                                      for _, ids in chunks(border, small)])[:len(border)]
    # one compiled shape per window side and group size; units of one window share a forward pass
    groups = _groups(np.stack([side_h[border], side_w[border], image_ids[border], s_h[border], s_w[border]], 1))
    for per, groups_GP in groups.items():
        groups_GP = border[groups_GP]
        for side in sorted(set(zip(side_h[groups_GP[:, 0]], side_w[groups_GP[:, 0]]))):
            same = groups_GP[(side_h[groups_GP[:, 0]] == side[0]) & (side_w[groups_GP[:, 0]] == side[1])]
            win = window_model(model, layer, tuple(int(v) for v in side))
            window_crop = _crops(tuple(win.input_shape[:2]))
            for part, padded in _chunks(same, chunk or max(1, 2 * _fitting(win, layer, memory_budget) // (1 + per))):
                first = padded[:, 0]
                windows = window_crop(normalized(image_ids[first]), s_h[first], s_w[first])
                sh, sw = s_h[padded], s_w[padded]
                projected = np.asarray(_project_shared(
                    win, head, windows, chan[padded], rows[padded] - sh // jump[0], cols[padded] - sw // jump[1],
                    tops[padded] - sh, lefts[padded] - sw, layer, rule, field.size))[:len(part)]
                out[part.ravel()] = projected.reshape(-1, *projected.shape[2:])
    return _patches(maps, out, patches, tops, lefts, field, channels, k, model.input_shape[2])


def _patches(maps, out, patches, tops, lefts, field, channels, k, depth) -> Patches:
    shape = (channels, k, *field.size, depth)
    window = np.stack([tops, lefts, np.full_like(tops, field.size[0]), np.full_like(lefts, field.size[1])], -1)
    return Patches(maps, out.reshape(shape), patches.reshape(shape), window.reshape(channels, k, 4))


def project_top_k_spread(model: Model, params: Params, images, top: TopK, layer: str, maps=None,
                         rule: str = "deconvnet", chunk: int | None = None, memory_budget: float = 1e9) -> Patches:
    """:func:`project_top_k`, its maps shared out over the processes of a ``jax.distributed``
    job (contiguous blocks; one process projects them all); every process gets every map's
    projections and patches, in the order of ``maps``. All processes call it alike."""
    maps = _checked_maps(model, images, top, layer, maps, rule, chunk, memory_budget)
    field, k, depth = model.receptive_field(layer), top.value.shape[1], model.input_shape[2]
    processes = jax.process_count()
    blocks = [distributed.share(len(maps), p, processes) for p in range(processes)]
    mine = blocks[jax.process_index()]
    most = max(len(b) for b in blocks)
    arrays = {"projection": np.zeros((most, k, *field.size, depth), np.float32),
              "window": np.zeros((most, k, 4), np.int32)}
    arrays["patch"] = np.zeros_like(arrays["projection"])
    if len(mine):
        done = project_top_k(model, params, images, top, layer, maps[mine.start:mine.stop], rule, chunk, memory_budget)
        for name, value in arrays.items():
            value[:len(mine)] = getattr(done, name)
    gathered = distributed.allgather(arrays, f"projections of {layer}")
    joined = {name: np.concatenate([value[p, :len(b)] for p, b in enumerate(blocks)])
              for name, value in gathered.items()}
    return Patches(maps, joined["projection"], joined["patch"], joined["window"])
