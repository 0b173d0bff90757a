"""Class names: from a network's output index to words, and back.

A :class:`ClassNames` maps output indices to short display names (and, for ImageNet, to
WordNet ids and synonyms): :meth:`ClassNames.decode` turns probabilities into the top-k
``(index, name, probability)`` and :meth:`ClassNames.index` finds a class by index, name,
synonym or WordNet id, so figures and command lines speak in names rather than indices.

:data:`IMAGENET` holds the 1000 ILSVRC2012 classes in the order torchvision and Keras
networks output them (WordNet ids sorted), read from ``jaxvis/sample/imagenet_classes.txt``.
That file comes from timm 1.0.31 (PyPI, Apache-2.0): ``timm/data/_info/imagenet_synsets.txt``
gives the order and ``imagenet_synset_to_lemma.txt`` the synonyms, which are WordNet 3.0
lemmas (WordNet License, Princeton University). The display name is the first synonym; it
equals torchvision's ``weights.meta["categories"]`` for all 1000 classes, including its two
disambiguations, 134 "crane bird" (517 is the machine "crane") and 639 "maillot tank suit"
(638 is "maillot"). :data:`MNIST` and :data:`FASHION_MNIST` reuse the names of
:mod:`jaxvis.data`.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import importlib.resources
import re

import numpy as np

from jaxvis import _checks, data
from jaxvis.models import Model

IMAGENET_FILE = "imagenet_classes.txt"
_WNID = re.compile(r"n\d{8}")


@dataclasses.dataclass(frozen=True)
class ClassNames:
    """Names of a classifier's outputs, in output order.

    Attributes:
      names: one short display name per class (unique).
      ids: WordNet ids (ImageNet), or None.
      source: where the names come from, in words.
      synonyms: every name of each class (the display name first), or None.
    """

    names: tuple[str, ...]
    ids: tuple[str, ...] | None
    source: str
    synonyms: tuple[tuple[str, ...], ...] | None = None

    def __post_init__(self):
        for what, values in (("ids", self.ids), ("synonyms", self.synonyms)):
            if values is not None and len(values) != len(self.names):
                raise ValueError(f"ClassNames needs one entry of {what} per name: {len(self.names)} names, "
                                 f"{len(values)} {what}")
        repeated = sorted({n for n in self.names if self.names.count(n) > 1})
        if repeated:
            raise ValueError(f"class names must be unique, got {repeated} more than once")

    def __len__(self) -> int:
        return len(self.names)

    def name(self, i) -> str:
        """The display name of class ``i``."""
        _checks.index("class index", i, len(self))
        return self.names[int(i)]

    def index(self, spec) -> int:
        """The class that ``spec`` names: an index (``130`` or ``"130"``), a display name,
        a synonym or a WordNet id (``"flamingo"``, ``"n02007558"``), case-insensitive.

        A case-insensitive name shared by several classes is settled by its exact spelling
        ("Cardigan" the dog, "cardigan" the sweater); a name still shared, or unknown, is a
        ``ValueError`` (an unknown one with the closest names).
        """
        if isinstance(spec, str) and re.fullmatch(r"\s*\d+\s*", spec):
            spec = int(spec)
        if isinstance(spec, (int, np.integer)) and not isinstance(spec, (bool, np.bool_)):
            _checks.index("class index", int(spec), len(self))
            return int(spec)
        if not isinstance(spec, str):
            raise ValueError(f"a class is an index, a name or a WordNet id, got {type(spec).__name__} {spec!r}")
        text = spec.strip()
        for candidates in self._name_tables:
            found = candidates.get(text.lower(), ())
            if len(found) > 1:
                found = [i for i in found if text in self._spellings(i)] or found
            if len(found) == 1:
                return found[0]
            if found:
                listed = ", ".join(f"{i} ({self._describe(i)})" for i in found)
                raise ValueError(f"class name {spec!r} is ambiguous: it names classes {listed}; "
                                 "give the index or the WordNet id")
        known = sorted({key for table in self._name_tables for key in table})
        close = difflib.get_close_matches(text.lower(), known, n=3)
        hint = f" Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
        raise ValueError(f"unknown class {spec!r} among the {len(self)} classes of {self.source}; expected an "
                         f"index in [0, {len(self)}), a class name{' or WordNet id' if self.ids else ''}.{hint}")

    def decode(self, probs, k: int = 5):
        """The ``k`` most probable classes as ``[(index, name, probability), ...]``, most
        probable first (ties: lower index first).

        Args:
          probs: probabilities ``(K,)``, or ``(N, K)`` for a batch (e.g. ``jax.nn.softmax(logits)``).
          k: how many classes to list, 1 <= k <= K.

        Returns:
          One list for ``(K,)``; a list of N lists for ``(N, K)``.
        """
        probs = np.asarray(probs)
        if probs.ndim not in (1, 2) or probs.shape[-1] != len(self) or probs.dtype.kind not in "fiu":
            raise ValueError(f"decode takes probabilities of shape ({len(self)},) or (N, {len(self)}) for the "
                             f"{len(self)} classes of {self.source}, got {probs.dtype} of shape {probs.shape}")
        _checks.finite(probs, "probabilities")
        if probs.size and (probs.min() < 0 or probs.max() > 1):
            raise ValueError(f"decode takes probabilities in [0, 1] (apply jax.nn.softmax to logits first), got "
                             f"values in [{probs.min():.4g}, {probs.max():.4g}]")
        _checks.count("k", k)
        if k > len(self):
            raise ValueError(f"k must be at most the number of classes, {len(self)}, got {k}")
        rows = np.atleast_2d(probs)
        top_NK = np.argsort(-rows, axis=-1, kind="stable")[:, :k]
        decoded = [[(int(i), self.names[i], float(row[i])) for i in top] for row, top in zip(rows, top_NK)]
        return decoded if probs.ndim == 2 else decoded[0]

    def _spellings(self, i: int) -> tuple[str, ...]:
        return (self.names[i], *(self.synonyms[i] if self.synonyms else ()), *((self.ids[i],) if self.ids else ()))

    def _describe(self, i: int) -> str:
        names = self.synonyms[i] if self.synonyms else (self.names[i],)
        return ", ".join((*names, *((self.ids[i],) if self.ids else ())))

    @functools.cached_property
    def _name_tables(self) -> tuple[dict[str, list[int]], ...]:
        """Lower-cased lookups tried in turn: WordNet ids and display names, then synonyms."""
        first: dict[str, list[int]] = {}
        second: dict[str, list[int]] = {}
        for i, name in enumerate(self.names):
            keys = {name.lower(), *((self.ids[i].lower(),) if self.ids else ())}
            for key in keys:
                first.setdefault(key, []).append(i)
            for synonym in {s.lower() for s in (self.synonyms[i] if self.synonyms else ())} - keys:
                second.setdefault(synonym, []).append(i)
        return first, second


def _read_imagenet() -> ClassNames:
    text = (importlib.resources.files("jaxvis") / "sample" / IMAGENET_FILE).read_text(encoding="utf-8")
    ids, synonyms = [], []
    for line in text.splitlines():
        if line.startswith("#") or not line.strip():
            continue
        wnid, names = line.split("\t")
        if not _WNID.fullmatch(wnid):
            raise ValueError(f"jaxvis/sample/{IMAGENET_FILE} is damaged: {wnid!r} is not a WordNet id")
        ids.append(wnid)
        synonyms.append(tuple(names.split(", ")))
    return ClassNames(tuple(s[0] for s in synonyms), tuple(ids),
                      "ImageNet-1k (ILSVRC2012; names: WordNet 3.0 lemmas via timm)", tuple(synonyms))


IMAGENET = _read_imagenet()
MNIST = ClassNames(data.DIGITS, None, "MNIST")
FASHION_MNIST = ClassNames(data.FASHION_CLASSES, None, "Fashion-MNIST")
CIFAR10 = ClassNames(data.CIFAR10_CLASSES, None, "CIFAR-10")
_BY_DATASET = {"imagenet2012": IMAGENET, "mnist": MNIST, "mnist_sample": MNIST, "fashion_mnist": FASHION_MNIST,
               "cifar10": CIFAR10}


def for_model(model_or_num_classes: Model | int, dataset: str | None = None) -> ClassNames:
    """The class names of a network's outputs.

    Args:
      model_or_num_classes: a :class:`~jaxvis.models.Model` or its number of outputs.
      dataset: the dataset it was trained on (a :mod:`jaxvis.data` name such as
        ``"fashion_mnist"``); if None, 1000 outputs are ImageNet's and any other number
        gets the names ``"class 0"``, ``"class 1"``, ...

    Raises ``ValueError`` for an unknown dataset or one whose class count differs from
    the network's outputs.
    """
    num_classes = (model_or_num_classes.num_classes if isinstance(model_or_num_classes, Model)
                   else model_or_num_classes)
    _checks.count("number of classes", num_classes)
    if dataset is None:
        if num_classes == len(IMAGENET):
            return IMAGENET
        return ClassNames(tuple(f"class {i}" for i in range(num_classes)), None, f"{num_classes} unnamed classes")
    _checks.choice("dataset", dataset, _BY_DATASET)
    names = _BY_DATASET[dataset]
    if len(names) != num_classes:
        raise ValueError(f"dataset {dataset!r} has {len(names)} classes but the network has {num_classes} outputs")
    return names
