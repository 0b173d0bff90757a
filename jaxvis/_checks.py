"""Input validation shared by the public functions.

Every check raises ``ValueError`` with what was expected and what was given, so that
bad input never reaches XLA (whose errors name internal shapes, not the user's).
Checks on array *values* (finiteness, index ranges) run only on concrete arrays; under
``jit`` the caller has already been checked at the boundary or the values are traced.
"""

from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Iterable, Sequence

import jax
import numpy as np


def is_concrete(x) -> bool:
    """True when ``x`` holds actual values (not a tracer inside jit/vmap/grad)."""
    return not isinstance(x, jax.core.Tracer)


def choice(what: str, value, choices: Iterable) -> None:
    """Raise unless ``value`` is one of ``choices``, suggesting the closest name."""
    choices = list(choices)
    if value in choices:
        return
    hint = ""
    if isinstance(value, str):
        close = difflib.get_close_matches(value, [str(c) for c in choices], n=1)
        if close:
            hint = f" Did you mean {close[0]!r}?"
    raise ValueError(f"unknown {what} {value!r}; expected one of {choices}.{hint}")


def index(what: str, value, size: int) -> None:
    """Raise unless every entry of ``value`` is an integer in ``[0, size)``."""
    if not is_concrete(value):
        return
    arr = np.asarray(value)
    if arr.dtype.kind not in "iu":
        raise ValueError(f"{what} must be an integer, got {arr.dtype} value {value!r}")
    if arr.size and (arr.min() < 0 or arr.max() >= size):
        bad = arr[(arr < 0) | (arr >= size)].ravel()[:5].tolist()
        raise ValueError(f"{what} out of range: expected 0 <= {what} < {size}, got {bad}")


def labels(labels_N, num_images: int, num_classes: int) -> np.ndarray:
    """One class index per image, shape ``(num_images,)``, as int32; a ``ValueError`` otherwise."""
    labels_N = np.asarray(labels_N)
    if labels_N.shape != (num_images,):
        raise ValueError(f"labels must have shape ({num_images},), one per image, got {labels_N.shape}")
    index("label", labels_N, num_classes)
    return labels_N.astype(np.int32)


def images(x, shape: Sequence[int], what: str = "images") -> None:
    """Raise unless ``x`` is a float NHWC batch whose per-image shape is ``shape``."""
    x_shape = tuple(np.shape(x))
    expected = tuple(shape)
    if len(x_shape) != 4:
        raise ValueError(
            f"{what} must be a batch of shape (N, {', '.join(map(str, expected))}) "
            f"(NHWC), got an array of rank {len(x_shape)} with shape {x_shape}"
        )
    if x_shape[-1] != expected[-1]:
        raise ValueError(
            f"{what} must have {expected[-1]} channels (NHWC, channels last), "
            f"got shape {x_shape} with {x_shape[-1]}"
        )
    if x_shape[1:] != expected:
        raise ValueError(f"{what} must have shape (N, {', '.join(map(str, expected))}), got {x_shape}")
    dtype = np.dtype(x.dtype if hasattr(x, "dtype") else np.asarray(x).dtype)
    if dtype.kind != "f":
        raise ValueError(
            f"{what} must be floating point (normalized with model.normalize), got dtype {dtype}"
        )
    finite(x, what)


def finite(x, what: str) -> None:
    """Raise if a concrete array holds NaN or infinity, saying how many and where."""
    if not is_concrete(x):
        return
    arr = np.asarray(x)
    bad = ~np.isfinite(arr)
    if bad.any():
        first = tuple(int(i) for i in np.argwhere(bad)[0])
        raise ValueError(
            f"{what} must be finite, got {int(bad.sum())} non-finite values "
            f"(first at index {first}: {arr[first]})"
        )


def count(what: str, value, minimum: int = 1, optional: bool = False) -> None:
    """Raise unless ``value`` is an integer (not a bool) ``>= minimum``, or None if ``optional``."""
    if optional and value is None:
        return
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{what} must be {'None or ' if optional else ''}an integer >= {minimum}, got {value!r}")


def positive(what: str, value, strict: bool = True) -> None:
    ok = value > 0 if strict else value >= 0
    if not ok:
        bound = "> 0" if strict else ">= 0"
        raise ValueError(f"{what} must be {bound}, got {value!r}")


def prng_key(what: str, key) -> None:
    """Raise unless ``key`` is a JAX PRNG key: a typed key (``jax.random.key``) or a raw
    ``uint32[2]`` key (``jax.random.PRNGKey``)."""
    if isinstance(key, jax.core.Tracer):
        return
    if isinstance(key, jax.Array) and jax.dtypes.issubdtype(key.dtype, jax.dtypes.prng_key):
        return
    shape, dtype = np.shape(key), getattr(key, "dtype", None)
    if isinstance(key, (jax.Array, np.ndarray)) and dtype == np.uint32 and shape[-1:] == (2,):
        return
    given = f"{type(key).__name__} {key!r}" if np.ndim(key) == 0 else f"{type(key).__name__} of shape {shape}, dtype {dtype}"
    raise ValueError(f"{what} must be a JAX PRNG key (jax.random.key(seed) or jax.random.PRNGKey(seed)), got {given}")


def keywords(what: str, given: Iterable[str], allowed: Iterable[str]) -> None:
    """Raise unless every name in ``given`` is in ``allowed``, suggesting the closest."""
    allowed = list(allowed)
    for name in given:
        if name not in allowed:
            close = difflib.get_close_matches(name, allowed, n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise ValueError(f"{what} has no setting {name!r}; its settings are {allowed}.{hint}")


def annotated_fields(obj) -> None:
    """Raise unless each field of the dataclass ``obj`` annotated ``int``, ``float`` or
    ``bool`` holds a value of that type (an ``int`` is a ``float``; a ``bool`` is neither,
    and ``2.5`` is not an ``int``). Dataclasses call it first in ``__post_init__`` so one
    rule covers every numeric setting."""
    for field in dataclasses.fields(obj):
        kind = {"int": int, "float": float, "bool": bool}.get(
            field.type if isinstance(field.type, str) else getattr(field.type, "__name__", ""))
        if kind is None:
            continue
        value = getattr(obj, field.name)
        if kind is bool:
            ok = isinstance(value, (bool, np.bool_))
        elif isinstance(value, (bool, np.bool_)):
            ok = False
        elif kind is int:
            ok = isinstance(value, (int, np.integer))
        else:
            ok = isinstance(value, (int, float, np.integer, np.floating))
        if not ok:
            raise ValueError(f"{type(obj).__name__}.{field.name} must be {'an' if kind is int else 'a'} "
                             f"{kind.__name__}, got {type(value).__name__} {value!r}")


def number(what: str, value, low: float = -np.inf, high: float = np.inf, above: bool = False) -> None:
    """Raise unless ``value`` is a finite real number (not a bool) in ``[low, high]``
    (``(low, high]`` if ``above``); traced values pass."""
    if isinstance(value, jax.core.Tracer):
        return
    real = not isinstance(value, (bool, np.bool_)) and np.ndim(value) == 0 and np.asarray(value).dtype.kind in "iuf"
    if not (real and np.isfinite(value) and (value > low if above else value >= low) and value <= high):
        bounds = [f"{'>' if above else '>='} {low:g}"] * (low > -np.inf) + [f"<= {high:g}"] * (high < np.inf)
        raise ValueError(f"{what} must be a finite number{' ' if bounds else ''}{' and '.join(bounds)}, "
                         f"got {type(value).__name__} {value!r}")
