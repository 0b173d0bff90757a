"""Feature evolution during training (Zeiler & Fergus Fig. 4).

For a few chosen maps of each layer, the strongest activation over a dataset at each of
several training snapshots, projected alone to pixel space with the deconvnet and
cropped to the unit's receptive field: one row per map, one column per snapshot. The
strongest activation is :func:`jaxvis.topk.top_k` with ``k=1`` (ties go to the earlier
image, then row, then column) and its projection :func:`jaxvis.topk.project_top_k`:
one pass over the data per snapshot, all chosen layers in that pass.

Two numbers for the paper's observation that lower layers settle within a few epochs and
upper ones much later, both per chosen map's filter (the kernel of the convolution that
makes the map): :func:`filter_similarity`, its cosine to the last snapshot's, and
:func:`filter_progress`, how much of the way from the first snapshot to the last it has
come. The cosine stays near 1 for a filter that training changes little compared with its
initialization; the progress is blind to that and shows *when* the change happens.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator, Mapping, Sequence

import jax
import numpy as np

from jaxvis import _checks, rules, topk
from jaxvis.models import Model, Params


@dataclasses.dataclass(frozen=True)
class LayerEvolution:
    """The chosen maps of one layer across ``S`` snapshots.

    ``maps`` is ``(M,)``; ``value``, ``image``, ``row`` and ``col`` (the strongest
    activation of each map and where it is) are ``(S, M)``; ``projection`` and ``patch``
    are ``(S, M, size_h, size_w, channels)`` over the unit's receptive field (zero where
    the field leaves the image); ``patch`` is the normalized input under it; ``window``
    ``(S, M, 4)`` is the field's top, left, height and width in the image.
    """

    maps: np.ndarray
    value: np.ndarray
    image: np.ndarray
    row: np.ndarray
    col: np.ndarray
    projection: np.ndarray
    patch: np.ndarray
    window: np.ndarray


@dataclasses.dataclass(frozen=True)
class Evolution:
    """``steps``: each snapshot's label (a training step), in the order given;
    ``layers``: a :class:`LayerEvolution` per layer, in the order given; ``image_hw``:
    the size of the images searched."""

    steps: tuple[int, ...]
    layers: dict[str, LayerEvolution]
    image_hw: tuple[int, int]


def _batches(images, batch_size: int) -> Iterator:
    """``images`` (an ``(N, H, W, C)`` array or a :class:`jaxvis.data.Dataset`) in order."""
    if hasattr(images, "batches"):
        return (x for x, _ in images.batches(batch_size))
    return (images[s:s + batch_size] for s in range(0, len(images), batch_size))


def _check_maps(model: Model, maps: Mapping[str, Sequence[int]]) -> dict[str, np.ndarray]:
    """``maps`` as integer arrays, after checking every layer and index."""
    if not isinstance(maps, Mapping):
        raise ValueError(f"maps must be a dict {{layer: map indices}}, e.g. {{'relu1': [0, 5]}}; got "
                         f"{type(maps).__name__}")
    if not maps:
        raise ValueError("maps must name at least one layer, e.g. {'relu1': [0, 5]}; got none")
    checked = {}
    for layer, ids in maps.items():
        model.check_layer(layer, spatial=True)
        ids = np.atleast_1d(np.asarray(list(ids) if isinstance(ids, (range, tuple)) else ids))
        if ids.ndim != 1 or not ids.size:
            raise ValueError(f"maps of layer {layer!r} must be a non-empty list of map indices, got {ids.tolist()}")
        _checks.index(f"map index of layer {layer!r}", ids, model.shapes[layer][-1])
        checked[layer] = ids.astype(np.int32)
    return checked


def _check_snapshots(model: Model, snapshots: Sequence[tuple[int, Params]]) -> None:
    if not snapshots:
        raise ValueError("evolution needs at least one (step, params) snapshot, got none")
    for snapshot in snapshots:
        if not isinstance(snapshot, (tuple, list)) or len(snapshot) != 2:
            raise ValueError(f"each snapshot must be a (step, params) pair, got {type(snapshot).__name__}"
                             + (f" of length {len(snapshot)}" if isinstance(snapshot, (tuple, list)) else ""))

    def shapes(tree) -> dict[str, tuple[int, ...]]:
        return {jax.tree_util.keystr(path): tuple(np.shape(leaf))
                for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]}

    expected = shapes(jax.eval_shape(model.init, jax.random.key(0)))
    for step, params in snapshots:
        found = shapes(params)
        if found != expected:
            diff = [f"{k}: {found.get(k)} (expected {expected.get(k)})" for k in sorted(found.keys() | expected.keys())
                    if found.get(k) != expected.get(k)]
            raise ValueError(f"the parameters of snapshot {step!r} do not fit {model.name}: {'; '.join(diff[:5])}")


def evolution(model: Model, snapshots: Sequence[tuple[int, Params]], images, maps: Mapping[str, Sequence[int]],
              *, batch_size: int = 256, rule: str = "deconvnet",
              progress: Callable[[int], object] | None = None) -> Evolution:
    """Fig. 4: the strongest activation of each chosen map at each snapshot, projected.

    Args:
      model: the network (one architecture for all snapshots).
      snapshots: ``(step, params)`` pairs, e.g. one per saved checkpoint.
      images: the examples searched, ``(N, H, W, C)`` (uint8 pixels, or floats already
        normalized) or a :class:`jaxvis.data.Dataset` (searched in file order).
      maps: ``{layer: map indices}``, e.g. ``{"relu1": [3, 17], "relu5": [8]}``.
      batch_size: images per forward pass.
      rule: the ReLU backward rule of the projection (the paper's: ``deconvnet``).
      progress: called with 1 after each snapshot.

    Raises:
      ValueError: no snapshots, a snapshot whose parameters do not fit ``model``, an
        unknown or non-spatial layer, a map index out of range, no images.
    """
    _check_snapshots(model, snapshots)
    maps = _check_maps(model, maps)
    _checks.count("batch_size", batch_size)
    _checks.choice("rule", rule, rules.RULES)
    if progress is not None and not callable(progress):
        raise ValueError(f"progress must be None or a callable, got {type(progress).__name__}")
    if not hasattr(images, "__len__") or not hasattr(images, "__getitem__"):
        raise ValueError(f"images must be an array (N, H, W, C) or a jaxvis.data.Dataset, got {type(images).__name__}")
    if len(images) == 0:
        raise ValueError("evolution needs at least one image, got none")
    keys = ("value", "image", "row", "col", "projection", "patch", "window")
    found = {layer: {key: [] for key in keys} for layer in maps}
    for _, params in snapshots:
        tops = topk.top_k(model, params, _batches(images, batch_size), tuple(maps), k=1)
        for layer, ids in maps.items():
            top = tops[layer]
            patches = topk.project_top_k(model, params, images, top, layer, maps=ids, rule=rule)
            for key in ("value", "image", "row", "col"):
                found[layer][key].append(np.asarray(getattr(top, key))[ids, 0])
            found[layer]["projection"].append(patches.projection[:, 0])
            found[layer]["patch"].append(patches.patch[:, 0])
            found[layer]["window"].append(patches.window[:, 0])
        if progress is not None:
            progress(1)
    layers = {layer: LayerEvolution(maps[layer], **{k: np.stack(v) for k, v in found[layer].items()})
              for layer in maps}
    return Evolution(tuple(step for step, _ in snapshots), layers, model.input_shape[:2])


def _conv_below(model: Model, layer: str) -> str:
    """The last convolution at or before ``layer``: the filters that make its maps."""
    convs = [spec.name for spec in model.layers[:model.names.index(layer) + 1] if spec.convolution]
    if not convs:
        raise ValueError(f"layer {layer!r} of {model.name} has no convolution below it")
    return convs[-1]


def _filters(model: Model, snapshots, maps) -> dict[str, np.ndarray]:
    """Per layer, ``(S, P, M)``: each chosen map's filter, flattened, at each snapshot."""
    _check_snapshots(model, snapshots)
    maps = _check_maps(model, maps)
    out = {}
    for layer, ids in maps.items():
        conv = _conv_below(model, layer)
        out[layer] = np.stack([np.asarray(params[conv]["kernel"], np.float64)[..., ids].reshape(-1, len(ids))
                               for _, params in snapshots])
    return out


def filter_similarity(model: Model, snapshots: Sequence[tuple[int, Params]],
                      maps: Mapping[str, Sequence[int]]) -> dict[str, np.ndarray]:
    """Per layer, ``(S, M)``: the cosine between each chosen map's filter (the kernel
    ``[:, :, :, m]`` of the convolution that makes the map) at each snapshot and at the
    last snapshot; 1 means that the filter no longer changes direction."""
    out = {}
    for layer, kernels_SPM in _filters(model, snapshots, maps).items():
        last_PM = kernels_SPM[-1]
        dots_SM = np.einsum("spm,pm->sm", kernels_SPM, last_PM)
        norms_SM = np.linalg.norm(kernels_SPM, axis=1) * np.linalg.norm(last_PM, axis=0)[None]
        out[layer] = np.divide(dots_SM, norms_SM, out=np.zeros_like(dots_SM), where=norms_SM > 0)
    return out


def filter_progress(model: Model, snapshots: Sequence[tuple[int, Params]],
                    maps: Mapping[str, Sequence[int]]) -> dict[str, np.ndarray]:
    """Per layer, ``(S, M)``: ``1 - |W_s - W_last| / |W_first - W_last|`` for each chosen
    map's filter ``W``: 0 at the first snapshot, 1 at the last (1 throughout for a filter
    that did not change)."""
    out = {}
    for layer, kernels_SPM in _filters(model, snapshots, maps).items():
        left_SM = np.linalg.norm(kernels_SPM - kernels_SPM[-1:], axis=1)
        total_M = left_SM[0]
        out[layer] = 1.0 - np.divide(left_SM, total_M[None], out=np.zeros_like(left_SM), where=total_M[None] > 0)
    return out
