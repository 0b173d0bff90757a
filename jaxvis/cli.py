"""What the command lines in ``scripts/`` share: the network and data arguments, and loading them.

Every analysis script takes a trained network (``--checkpoint``, a directory with a
``card.json``), a dataset split (``--dataset``, ``--split``, ``--data-dir``) and an output
folder (``--out``); :func:`parser` adds those arguments and :func:`open_network` /
:func:`open_examples` turn them into a model, its parameters and the examples.
"""

from __future__ import annotations

import argparse
import ast
import json
import os
from pathlib import Path

import numpy as np

from jaxvis import checkpoint, data, models, weights
from jaxvis.models import Model, Params


def parser(doc: str | None, *, out: str | None, checkpoint: str | None = None, dataset: str | None = "mnist_sample",
           split: str = "test", weights: bool = False) -> argparse.ArgumentParser:
    """An argument parser with ``--checkpoint`` (required unless given a default, or
    unless ``weights``, which adds ``--weights FILE --model NAME`` as the alternative),
    ``--out`` (required if None), and unless ``dataset`` is None ``--dataset``, ``--split`` and ``--data-dir``."""
    p = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", required=checkpoint is None and not weights, default=checkpoint,
                   help="a checkpoint directory (with card.json)" + (f"; default {checkpoint}" if checkpoint else ""))
    if weights:
        p.add_argument("--weights", help="instead of --checkpoint: a weights file (.pth, .safetensors, .npz, .h5)")
        p.add_argument("--model", help="the zoo model --weights is for")
    p.add_argument("--out", default=out, required=out is None,
                   help="where the outputs go" + (f" (default {out})" if out else ""))
    if dataset is not None:
        p.add_argument("--dataset", default=dataset, help=f"one of {', '.join(data.DATASETS)} (default {dataset})")
        p.add_argument("--split", default=split)
        p.add_argument("--data-dir", help="where the dataset is (default: $JAXVIS_DATA_DIR, then tfds)")
    return p


def output_dir(args: argparse.Namespace, flag: str = "--out") -> Path:
    """``--out`` (or the folder named by ``flag``), created; a path that is a file is a ``ValueError``."""
    out = Path(getattr(args, flag.lstrip("-").replace("-", "_")))
    return folder(out, flag)


def folder(path, what: str) -> Path:
    """``path`` as a folder, created with its parents; a ``ValueError`` names ``what`` when
    it, or a parent, is a file."""
    path = Path(path)
    for p in (path, *path.parents):
        if p.exists() and not p.is_dir():
            raise ValueError(f"{what} must be a folder, but {p} is a file")
    path.mkdir(parents=True, exist_ok=True)
    return path


def open_network(args: argparse.Namespace) -> tuple[Model, Params, dict]:
    """``(model, params, card)`` of ``--checkpoint``, or of ``--weights`` with ``--model``
    (the card then names the file)."""
    if args.checkpoint:
        return checkpoint.restore_model(args.checkpoint)
    if not (getattr(args, "weights", None) and getattr(args, "model", None)):
        raise SystemExit("give --checkpoint DIR, or --weights FILE with --model NAME")
    model = models.build(args.model)
    return model, weights.load(model, args.weights), {"model": args.model, "weights": str(args.weights)}


def open_examples(args: argparse.Namespace, image_size: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """All of ``--dataset``/``--split`` in file order as ``(images_NHWC uint8, labels_N)``
    (for datasets that fit in memory)."""
    dataset = data.open_dataset(args.dataset, args.split, data_dir=args.data_dir, image_size=image_size)
    return next(iter(dataset.batches(dataset.num_examples)))


def first_per_class(labels_N: np.ndarray, count: int = 1, num_classes: int | None = None) -> np.ndarray:
    """Indices of the first ``count`` examples of classes 0, 1, ..., ``num_classes - 1``,
    class by class (default: every class present in ``labels_N``)."""
    labels_N = np.asarray(labels_N)
    if count < 1 or (num_classes is not None and num_classes < 1) or not labels_N.size:
        raise ValueError(f"wanted at least 1 example of at least 1 class from a non-empty set, got count={count}, "
                         f"num_classes={num_classes} and {labels_N.size} labels")
    classes = range(int(labels_N.max()) + 1 if num_classes is None else num_classes)
    chosen = [np.flatnonzero(labels_N == c)[:count] for c in classes]
    short = [c for c, idx in zip(classes, chosen) if len(idx) < count]
    if short:
        raise ValueError(f"wanted {count} example(s) of each class, but classes {short} have fewer")
    return np.concatenate(chosen)


def setting(text: str) -> tuple[str, object]:
    """``--set KEY=VALUE``: the value as a Python literal (``3``, ``1e-3``, ``(16, 32)``,
    ``True``; also ``true``/``false``, ``none``), else a string."""
    key, sep, value = text.partition("=")
    if not sep:
        raise argparse.ArgumentTypeError(f"--set takes key=value, got {text!r}")
    words = {"true": True, "false": False, "none": None, "null": None}
    if value.strip().lower() in words:
        return key, words[value.strip().lower()]
    try:
        return key, ast.literal_eval(value)
    except (ValueError, SyntaxError):
        return key, value


def count(text: str) -> int:
    """An argparse type: an integer >= 1."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text!r}")
    return value


def read_json(path):
    """A JSON file's content; a damaged file is an error that names it."""
    try:
        return json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise SystemExit(f"cannot read {path} as JSON ({type(err).__name__}: {err}); restore or delete it") from err


# What ends a script with one line instead of a traceback: bad input (jaxvis raises
# ``ValueError`` naming what was expected and what was given), the file system refusing a
# path (``OSError``: a file where a folder is expected, a missing or unreadable file, no
# permission), and a run that stopped being finite (``FloatingPointError``).
USER_ERRORS = (ValueError, OSError, FloatingPointError)


def run(main) -> None:
    """Run a script's ``main()``. A user error (:data:`USER_ERRORS`) ends it with its message
    and exit status 1 instead of a traceback; set ``JAXVIS_TRACEBACK=1`` to see the traceback."""
    try:
        main()
    except USER_ERRORS as err:
        if os.environ.get("JAXVIS_TRACEBACK"):
            raise
        raise SystemExit(f"error: {_describe(err)}") from None


def _describe(err: BaseException) -> str:
    """The error's message; an ``OSError`` also names its path and, where the message
    alone is terse (``[Errno 20] Not a directory``), what kind of failure it was."""
    if isinstance(err, OSError) and err.filename is not None and str(err.filename) not in str(err.strerror or ""):
        return f"{err.strerror or type(err).__name__}: {err.filename}"
    return str(err)


def report(paths) -> None:
    """Say where each output went."""
    for path in paths:
        print(f"wrote {path}")
