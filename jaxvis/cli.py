"""What the command lines in ``scripts/`` share: the network and data arguments, and loading them.

Every analysis script takes a network (``--checkpoint``, a directory with a ``card.json``,
or ``--weights FILE --model NAME``), images (a dataset split: ``--dataset``, ``--split``,
``--data-dir``; or photos: ``--image FILE...``) and an output folder (``--out``);
:func:`parser` adds those arguments and :func:`open_network` / :func:`open_inputs` turn
them into a model, its parameters and the images. Photos have no true labels: scripts
explain the predicted class, or the one ``--class`` names (:func:`targets`), and say so.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import json
import os
from pathlib import Path

import jax
import numpy as np

from jaxvis import _io, checkpoint, classes, data, images, models, weights
from jaxvis.models import Model, Params


def parser(doc: str | None, *, out: str | None, checkpoint: str | None = None, dataset: str | None = "mnist_sample",
           split: str = "test", weights: bool = True, photos: bool | None = None) -> argparse.ArgumentParser:
    """An argument parser with ``--checkpoint`` (required unless given a default, or
    unless ``weights``, which adds ``--weights FILE --model NAME [--preset NAME]
    [--input-size H [W]]`` as the alternative), ``--out`` (required if None), and unless
    ``dataset`` is None ``--dataset``, ``--split`` and ``--data-dir``. ``photos`` (default:
    whether there is a dataset) adds ``--image FILE...`` as the alternative to ``--dataset``."""
    p = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    network = p.add_mutually_exclusive_group(required=checkpoint is None)
    network.add_argument("--checkpoint", default=checkpoint,
                         help="a checkpoint directory (with card.json)" + (f"; default {checkpoint}" if checkpoint else ""))
    if weights:
        network.add_argument("--weights", help="instead of --checkpoint: a weights file (.pth, .safetensors, .npz, .h5)")
        p.add_argument("--model", help="the zoo model --weights is for (e.g. vgg16)")
        p.add_argument("--preset", help="how photos are resized and normalized for --weights: torchvision, caffe or "
                                        "whole (default: the one that matches the weights file)")
        p.add_argument("--input-size", type=count, nargs="+", metavar=("H", "W"),
                       help="with --weights: the model's input size (default the model's own, 224 for the zoo)")
        p.add_argument("--model-set", type=setting, action="append", default=[], metavar="KEY=VALUE",
                       help="with --weights: a setting of the zoo model (a Python literal), e.g. num_classes=10")
    p.add_argument("--out", default=out, required=out is None,
                   help="where the outputs go" + (f" (default {out})" if out else ""))
    if dataset is not None:
        p.add_argument("--dataset", default=dataset, help=f"one of {', '.join(data.DATASETS)} (default {dataset})")
        p.add_argument("--split", default=split)
        p.add_argument("--data-dir", help="where the dataset is (default: $JAXVIS_DATA_DIR, then tfds)")
    if photos or (photos is None and dataset is not None):
        p.add_argument("--image", nargs="+", metavar="FILE",
                       help="instead of --dataset: photos (files, folders or globs); they have no true labels, "
                            "so the predicted class (or --class) stands in for the label")
    return p


def add_class(p: argparse.ArgumentParser, default: str = "the true class; with --image the predicted one") -> None:
    """``--class``: the class a method explains, as a name, an index or ``predicted``."""
    p.add_argument("--class", dest="target", metavar="CLASS",
                   help=f"a class name (e.g. flamingo), an index (e.g. 130) or 'predicted' (default: {default})")


def output_dir(args: argparse.Namespace, flag: str = "--out") -> Path:
    """``--out`` (or the folder named by ``flag``), created; a path that is a file is a ``ValueError``."""
    out = Path(getattr(args, flag.lstrip("-").replace("-", "_")))
    return folder(out, flag)


def folder(path, what: str) -> Path:
    """``path`` as a folder, created with its parents; a ``ValueError`` names ``what`` when
    it, or a parent, is a file."""
    return _io.folder(path, what)


def open_network(args: argparse.Namespace) -> tuple[Model, Params, dict]:
    """``(model, params, card)`` of ``--checkpoint``, or of ``--weights`` with ``--model``
    (the card then names the file, the preset and the input size; the model normalizes
    as the preset says). ``args.checkpoint`` is set to None when the weights are used."""
    given = getattr(args, "weights", None)
    if not given:
        if not args.checkpoint:
            raise SystemExit("give --checkpoint DIR, or --weights FILE with --model NAME")
        return checkpoint.restore_model(args.checkpoint)
    if not getattr(args, "model", None):
        raise SystemExit("give --weights FILE with --model NAME")
    args.checkpoint = None
    preset = args.preset or images.preset_for_weights(given)
    images.check_preset(preset, given)
    args.preset = preset
    overrides = dict(args.model_set)
    if args.input_size:
        if len(args.input_size) > 2:
            raise ValueError(f"--input-size takes H or H W, got {len(args.input_size)} numbers {args.input_size}")
        h, w = (*args.input_size, *args.input_size)[:2]
        overrides["input_size"] = h if h == w else (h, w)
    model = models.build(args.model, **overrides)
    if model.input_shape[-1] == 3:  # photo presets normalize RGB; a grey network keeps its own
        model = images.for_preset(model, preset)
    card = {"model": args.model, "weights": str(given), "preset": preset, "input_size": list(model.input_shape[:2]),
            "model_settings": {k: v for k, v in overrides.items() if k != "input_size"}}
    return model, weights.load(model, given), card


def source(args: argparse.Namespace) -> str:
    """The network's origin for titles and JSON: the checkpoint or the weights file."""
    return args.checkpoint or f"{args.weights} ({args.model}, {args.preset} preset)"


@dataclasses.dataclass(frozen=True)
class Inputs:
    """The images an analysis runs on, from ``--dataset`` or ``--image``.

    Attributes:
      pixels_NHWC: float32 pixels in [0, 1], the model's input size and channels.
      labels_N: the true classes, or None for photos (which have none).
      names: per image, its file name (photos) or ``#index`` in the split.
      indices_N: the images' indices in the split (photos: 0, 1, ...).
      source: where they came from, for titles (``mnist/test``, ``3 photos``).
      notes: per photo, what reading it converted (:attr:`jaxvis.images.Photo.note`), or None.
    """

    pixels_NHWC: np.ndarray
    labels_N: np.ndarray | None
    names: tuple[str, ...]
    indices_N: np.ndarray
    source: str
    notes: tuple[str | None, ...] = ()


def open_inputs(args: argparse.Namespace, model: Model, choose=None) -> Inputs:
    """The photos of ``--image`` (every one, in :func:`jaxvis.images.find`'s order, read
    with ``args.preset``, default ``whole``, at the model's input size; grey for a
    one-channel model), else the examples of ``--dataset`` that ``choose(labels_N)``
    picks (an index array; default all)."""
    if getattr(args, "image", None):
        photos = images.load(images.find(args.image), getattr(args, "preset", None) or "whole",
                             size=tuple(model.input_shape[:2]), min_size=min(32, *model.input_shape[:2]))
        pixels = np.asarray(photos.pixels_NHWC, np.float32)
        if model.input_shape[-1] == 1:  # a grey network (MNIST) sees the photos' luminance
            pixels = pixels @ np.asarray([[0.299], [0.587], [0.114]], np.float32)
        names = tuple(Path(p).name for p in photos.paths)
        return Inputs(pixels, None, names, np.arange(len(names)), f"{len(names)} photo(s)", photos.notes)
    images_NHWC, labels = open_examples(args)
    chosen = np.arange(len(labels)) if choose is None else np.asarray(choose(labels))
    return Inputs(images_NHWC[chosen].astype(np.float32) / 255.0, np.asarray(labels)[chosen],
                  tuple(f"#{i}" for i in chosen), chosen, f"{args.dataset}/{args.split}")


def class_names(args: argparse.Namespace, model: Model, card: dict | None = None):
    """The :class:`jaxvis.classes.ClassNames` of the model's outputs (from ``--dataset``,
    else the checkpoint card's dataset)."""
    dataset = None if getattr(args, "image", None) else getattr(args, "dataset", None)
    return classes.for_model(model, dataset or (card or {}).get("dataset"))


def predict(model: Model, params: Params, x_NHWC, chunk: int = 32) -> np.ndarray:
    """Softmax probabilities ``(N, K)`` of normalized images, ``chunk`` at a time."""
    apply = jax.jit(model.apply)
    x_NHWC = np.asarray(x_NHWC)
    return np.concatenate([np.asarray(jax.nn.softmax(apply(params, x_NHWC[i:i + chunk])[0]))
                           for i in range(0, len(x_NHWC), chunk)])


def targets(args: argparse.Namespace, names, labels_N, probs_NK) -> tuple[np.ndarray, str]:
    """The class each image is explained for, and what it is (for titles): ``--class``
    (a name or index: that class for every image; ``predicted``: the predicted class),
    else the true label, else (photos) the predicted class."""
    spec = getattr(args, "target", None)
    if spec is None or str(spec).lower() == "predicted":
        if spec is None and labels_N is not None:
            return np.asarray(labels_N), "true class"
        return np.asarray(probs_NK).argmax(axis=1), "predicted class"
    k = names.index(spec)
    return np.full(len(probs_NK), k), f"class {names.name(k)}"


def photo_records(inputs: Inputs, names, probs_NK, classes_N) -> list[dict]:
    """Per image (for a script's JSON): its file, predicted class and the class
    explained, with names and probabilities; no true label (photos have none)."""
    probs_NK = np.asarray(probs_NK)
    predicted = probs_NK.argmax(axis=1)
    return [{"image": name, "predicted": int(p), "predicted_name": names.name(int(p)),
             "predicted_prob": round(float(probs_NK[i, p]), 6), "class": int(c), "class_name": names.name(int(c)),
             "class_prob": round(float(probs_NK[i, c]), 6)}
            for i, (name, p, c) in enumerate(zip(inputs.names, predicted, classes_N))]


def occluder(image_hw, args_patch: int | None, args_stride: int | None, stride_share: int) -> tuple[int, int]:
    """An occluder's side and stride, each as given or by default a seventh of the image's
    shorter side (4 on MNIST's 28, 32 on 224) and ``1 / stride_share`` of the side."""
    patch = args_patch or max(1, round(min(image_hw) / 7))
    return patch, args_stride or max(1, patch // stride_share)


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
    and exit status 1 instead of a traceback; set ``JAXVIS_TRACEBACK=1`` to see the traceback.
    A script's own ``SystemExit("message")`` ends it with the same ``error: message`` line."""
    try:
        main()
    except USER_ERRORS as err:
        if os.environ.get("JAXVIS_TRACEBACK"):
            raise
        raise SystemExit(f"error: {_describe(err)}") from None
    except SystemExit as err:  # argparse exits with a status number (after its message), left as is
        if isinstance(err.code, str) and not err.code.startswith("error: "):
            raise SystemExit(f"error: {err.code}") from None
        raise


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
