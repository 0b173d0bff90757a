"""Experiments as code: one module per experiment, each with ``get_config() -> Config``.

Each module's docstring gives the command that runs it and the result to expect.
``get("mnist_cnn", num_epochs=1)`` returns a config with settings replaced; every
setting is checked when the config is made, so a bad value fails before any work.
"""

from __future__ import annotations

import dataclasses
import importlib
import math
from collections.abc import Mapping
from typing import Any

from jaxvis import _checks, data, models

NAMES = ("mnist_cnn", "fashion_cnn", "cifar10_cnn", "zfnet_imagenet", "alexnet_imagenet", "mnist_resnet")
OPTIMIZERS = ("sgd", "adam")
SCHEDULES = ("constant", "cosine", "step")


@dataclasses.dataclass(frozen=True)
class Config:
    """Everything that defines a training run.

    ``optimizer``: ``sgd`` (with ``momentum``; ``weight_decay`` is an L2 term added to
    the gradient, as in Krizhevsky et al.) or ``adam`` (AdamW: decoupled decay). Weight
    decay applies to kernels, not biases. ``schedule``: ``constant``, ``cosine`` (to 0 at
    the last step) or ``step`` (times ``decay_factor`` at each of ``decay_epochs``), after
    a linear warm-up of ``warmup_epochs``. ``filter_radius``: after each step, rescale
    every conv filter whose RMS exceeds it to it (Zeiler & Fergus Sec. 3: 0.1).
    ``max_steps`` stops the run early without changing the schedule (smoke runs, tests).
    ``num_devices``: how many local devices share each batch (None: all).

    The network is ``models.variant(model, model_overrides, model_edits, model_without)``:
    the zoo model built with ``model_overrides``, then with the layers ``model_without``
    removed and the ``model_edits`` applied (ablations: ``model_without=("conv3", "relu3")``,
    ``model_edits={"fc6": {"features": 512}}``). ``image_size``: images are resized to
    this square size when the data is opened (e.g. 28x28 Fashion-MNIST to 64x64).
    """

    name: str
    model: str
    dataset: str
    model_overrides: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    model_edits: Mapping[str, Mapping[str, Any]] = dataclasses.field(default_factory=dict)
    model_without: tuple[str, ...] = ()
    image_size: int | None = None
    train_split: str = "train"
    eval_split: str = "test"
    num_epochs: int = 1
    batch_size: int = 128
    eval_batch_size: int = 500
    optimizer: str = "sgd"
    learning_rate: float = 1e-2
    momentum: float = 0.9
    schedule: str = "constant"
    warmup_epochs: float = 0.0
    decay_epochs: tuple[int, ...] = ()
    decay_factor: float = 0.1
    weight_decay: float = 0.0
    filter_radius: float | None = None
    augment: bool = False
    ten_crop_eval: bool = False
    seed: int = 0
    eval_every_epochs: int = 1
    log_every_steps: int = 100
    checkpoint_every_steps: int = 1000
    keep_checkpoints: int = 2
    max_steps: int | None = None
    num_devices: int | None = None

    def __post_init__(self):
        _checks.annotated_fields(self)
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"name must be a non-empty string, got {self.name!r}")
        if not isinstance(self.model_overrides, Mapping) or not all(isinstance(k, str) for k in self.model_overrides):
            raise ValueError(f"model_overrides must be a dict of build settings, e.g. {{'widths': (16, 32)}}, "
                             f"got {self.model_overrides!r}")
        if not isinstance(self.model_edits, Mapping) or not all(
                isinstance(k, str) and isinstance(v, Mapping) for k, v in self.model_edits.items()):
            raise ValueError(f"model_edits must be a dict of layer name to a dict of settings, e.g. "
                             f"{{'fc5': {{'features': 512}}}}, got {self.model_edits!r}")
        if not isinstance(self.model_without, (tuple, list)) or not all(isinstance(n, str) for n in self.model_without):
            raise ValueError(f"model_without must be a tuple of layer names, e.g. ('conv3', 'relu3'), "
                             f"got {self.model_without!r}")
        _checks.choice("dataset", self.dataset, data.DATASETS)
        splits = data.DATASETS[self.dataset].splits
        _checks.choice(f"train_split of {self.dataset}", self.train_split, splits)
        _checks.choice(f"eval_split of {self.dataset}", self.eval_split, splits)
        _checks.choice("optimizer", self.optimizer, OPTIMIZERS)
        _checks.choice("schedule", self.schedule, SCHEDULES)
        for key in ("num_epochs", "batch_size", "eval_batch_size", "eval_every_epochs", "log_every_steps",
                    "checkpoint_every_steps", "keep_checkpoints"):
            _checks.count(key, getattr(self, key))
        _checks.count("seed", self.seed, minimum=0)
        if self.filter_radius is not None and (isinstance(self.filter_radius, bool)
                                               or not isinstance(self.filter_radius, (int, float))):
            raise ValueError(f"filter_radius must be None or a number, got {self.filter_radius!r}")
        for key in ("learning_rate", "momentum", "weight_decay", "decay_factor", "warmup_epochs", "filter_radius"):
            if getattr(self, key) is not None and not math.isfinite(getattr(self, key)):
                raise ValueError(f"{key} must be a finite number, got {getattr(self, key)!r}")
        if not isinstance(self.decay_epochs, (tuple, list)) or not all(
                isinstance(e, int) and not isinstance(e, bool) for e in self.decay_epochs):
            raise ValueError(f"decay_epochs must be a tuple of epochs (integers), got {self.decay_epochs!r}")
        _checks.positive("learning_rate", self.learning_rate)
        if not 0 <= self.momentum < 1:
            raise ValueError(f"momentum must be in [0, 1), got {self.momentum!r}")
        _checks.positive("weight_decay", self.weight_decay, strict=False)
        if not 0 < self.decay_factor <= 1:
            raise ValueError(f"decay_factor must be in (0, 1], got {self.decay_factor!r}")
        if not 0 <= self.warmup_epochs < self.num_epochs:
            raise ValueError(f"warmup_epochs must be in [0, num_epochs={self.num_epochs}), got {self.warmup_epochs!r}")
        if list(self.decay_epochs) != sorted(set(self.decay_epochs)) or any(
                not self.warmup_epochs <= e < self.num_epochs for e in self.decay_epochs):
            raise ValueError(f"decay_epochs must be increasing epochs in [warmup_epochs, num_epochs="
                             f"{self.num_epochs}), got {self.decay_epochs!r}")
        if self.filter_radius is not None:
            _checks.positive("filter_radius", self.filter_radius)
        for key in ("max_steps", "num_devices", "image_size"):
            _checks.count(key, getattr(self, key), optional=True)
        spec = data.DATASETS[self.dataset]
        if self.augment and spec.augment is None:
            raise ValueError(f"augment: {self.dataset} has no augmentation (flipping or shifting it changes what "
                             "the images show); set augment=False")
        if self.ten_crop_eval and spec.augment != "crop_flip":
            raise ValueError(f"ten_crop_eval is the ImageNet evaluation; {self.dataset} has no crops to take")
        model = self.build_model()
        shape = spec.image_shape if self.image_size is None else (self.image_size, self.image_size,
                                                                  spec.image_shape[2])
        if model.input_shape != shape:
            raise ValueError(f"model {model.name} takes images of shape {model.input_shape}, but {self.dataset} "
                             f"gives {shape}; set model_overrides (input_shape=...) or image_size")
        if spec.class_names and model.num_classes != len(spec.class_names):
            raise ValueError(f"model {model.name} has {model.num_classes} outputs, but {self.dataset} has "
                             f"{len(spec.class_names)} classes")

    def build_model(self) -> models.Model:
        return models.variant(self.model, self.model_overrides, self.model_edits, self.model_without)

    def model_card(self) -> dict[str, Any]:
        """What a checkpoint's card records of the network (read by ``checkpoint.model_from_card``)."""
        card = {"model": self.model, "model_overrides": dict(self.model_overrides)}
        if self.model_edits:
            card["model_edits"] = {k: dict(v) for k, v in self.model_edits.items()}
        if self.model_without:
            card["model_without"] = list(self.model_without)
        return card


def get(name: str, /, **overrides) -> Config:
    """The config of experiment ``name`` with ``overrides`` replacing its settings."""
    _checks.choice("config", name, NAMES)
    config = importlib.import_module(f"{__name__}.{name}").get_config()
    return replace(config, **overrides)


def replace(config: Config, **overrides) -> Config:
    """``config`` with some settings replaced; unknown settings raise ``ValueError``."""
    fields = [f.name for f in dataclasses.fields(Config)]
    for key in overrides:
        _checks.choice("config setting", key, fields)
    return dataclasses.replace(config, **overrides)
