"""Ablations: networks with layers removed or resized, trained and compared (Zeiler & Fergus
Sec. 5.1, Table 3).

An ablation is an edit of the network's layer tuple: ``(model_without, model_edits)``, the
layers removed and the layers' fields changed (see :func:`jaxvis.models.variant`). Each
variant is the base config with those two settings replaced, trained with
:func:`jaxvis.train.train_and_evaluate` in its own workdir, then evaluated on the training
split (dropout off) as well as the test split. :func:`run` skips variants already finished,
and a half-trained one resumes from its checkpoint.

:data:`ABLATIONS` holds the paper's Table 3 rows for the full-size ZFNet, to use with
``configs.get("zfnet_imagenet")``; :func:`paper_ablations` gives the same rows for a
network of other widths, such as :func:`fashion_zfnet`'s.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from tqdm import tqdm

from jaxvis import _checks, configs, data, train
from jaxvis._io import read_result, record_result
from jaxvis.configs import Config

Ablation = tuple[tuple[str, ...], Mapping[str, Mapping[str, Any]]]  # (model_without, model_edits)
RESULT_FILE = "result.json"

CONV3_4 = ("conv3", "relu3", "conv4", "relu4")
FC6 = ("fc6", "relu6", "drop6")
FC7 = ("fc7", "relu7", "drop7")


def paper_ablations(conv_widths: tuple[int, int, int] = (384, 384, 256), hidden: int = 4096) -> dict[str, Ablation]:
    """Table 3's variants of a ZFNet-shaped network whose conv3-5 have ``conv_widths`` maps
    and fc6-7 ``hidden`` units.

    The paper's rows, with its widths scaled alike: without layers 3 and 4, without 7,
    without 6 and 7, without 3, 4, 6 and 7; fc6-7 halved and doubled (2048, 8192); conv3-5
    widened by 4/3, 8/3 and 2 (384, 384, 256 to 512, 1024, 512); and the doubled fc6-7
    with the widened conv3-5.
    """
    if not isinstance(conv_widths, (tuple, list)) or len(conv_widths) != 3:
        raise ValueError(f"conv_widths must be the 3 widths of conv3-5, got {conv_widths!r}")
    for i, width in enumerate(conv_widths):
        _checks.count(f"conv{i + 3} width", width)
    _checks.count("hidden (fc6-7 units; halved in a variant)", hidden, minimum=2)
    c3, c4, c5 = conv_widths
    wide_conv = {"conv3": {"features": c3 * 4 // 3}, "conv4": {"features": c4 * 8 // 3},
                 "conv5": {"features": c5 * 2}}
    fc = lambda n: {"fc6": {"features": n}, "fc7": {"features": n}}
    return {
        "baseline": ((), {}),
        "without_conv3_4": (CONV3_4, {}),
        "without_fc7": (FC7, {}),
        "without_fc6_7": (FC6 + FC7, {}),
        "without_conv3_4_fc6_7": (CONV3_4 + FC6 + FC7, {}),
        "fc6_7_narrow": ((), fc(hidden // 2)),
        "fc6_7_wide": ((), fc(hidden * 2)),
        "conv3_5_wide": ((), wide_conv),
        "fc6_7_wide_conv3_5_wide": ((), {**fc(hidden * 2), **wide_conv}),
    }


ABLATIONS: dict[str, Ablation] = paper_ablations()


def ablations_for(model) -> dict[str, Ablation]:
    """:func:`paper_ablations` at the widths of ``model``'s conv3-5 and fc6 (a ZFNet or AlexNet shape)."""
    return paper_ablations(tuple(model.layer(n).features for n in ("conv3", "conv4", "conv5")),
                           model.layer("fc6").features)

# ZFNet's shape scaled to Fashion-MNIST resized to 64x64: maps 30 -> 15 -> 6 -> 3 -> 3 -> 3 -> 1
FASHION_ZFNET = dict(channels=1, mean=(0.2860,), std=(0.3530,), num_classes=10, input_size=64,
                     widths=(16, 32, 48, 48, 32), hidden=128)
FASHION_ABLATIONS: dict[str, Ablation] = paper_ablations(FASHION_ZFNET["widths"][2:], FASHION_ZFNET["hidden"])


def fashion_zfnet(**overrides) -> Config:
    """ZFNet's shape at a sixth of its widths on Fashion-MNIST resized to 64x64: Adam,
    learning rate 1e-3 with cosine decay, 2 epochs of batch 128 (``fashion_cnn``'s recipe),
    dropout 0.5 in fc6 and fc7. 2-8 minutes a variant on 2 shared CPU cores, with the load."""
    base = configs.replace(configs.get("fashion_cnn"), name="fashion_zfnet", model="zfnet",
                           model_overrides=FASHION_ZFNET, image_size=64, num_epochs=2, checkpoint_every_steps=500)
    return configs.replace(base, **overrides)


def _check_ablation(what: str, ablation) -> None:
    """Raise unless ``ablation`` is ``(layer names, {layer: {field: value}})``."""
    ok = isinstance(ablation, tuple) and len(ablation) == 2
    if ok:
        without, edits = ablation
        ok = (isinstance(without, (tuple, list)) and all(isinstance(n, str) for n in without)
              and isinstance(edits, Mapping) and all(isinstance(v, Mapping) for v in edits.values()))
    if not ok:
        raise ValueError(f"{what} must be (model_without, model_edits): a tuple of layer names and a dict "
                         f"{{layer: {{field: value}}}}, got {ablation!r}")


def _check_config(config) -> None:
    if not isinstance(config, Config):
        raise ValueError(f"expected a Config (jaxvis.configs.get), got {type(config).__name__}")


def describe(ablation: Ablation) -> str:
    """``without conv3, relu3; fc6.features=2048`` (or ``as is``)."""
    _check_ablation("ablation", ablation)
    without, edits = ablation
    parts = [f"without {', '.join(without)}"] if without else []
    parts += [f"{layer}.{key}={value}" for layer, change in edits.items() for key, value in change.items()]
    return "; ".join(parts) or "as is"


def variant_configs(base: Config, ablations: Mapping[str, Ablation]) -> dict[str, Config]:
    """The base config with each ablation's ``model_without`` and ``model_edits``.

    Raises:
      ValueError: an ablation names an unknown layer, or leaves the network with shapes
        that do not fit; the message names the ablation and the offending layer. All
        variants are checked before any is trained.
    """
    _check_config(base)
    if not isinstance(ablations, Mapping) or not ablations:
        raise ValueError(f"ablations must be a non-empty dict {{name: (model_without, model_edits)}}, got {ablations!r}")
    out = {}
    for name, ablation in ablations.items():
        _check_ablation(f"ablation {name!r}", ablation)
        without, edits = ablation
        try:
            out[name] = configs.replace(base, model_without=tuple(without),
                                        model_edits={k: dict(v) for k, v in edits.items()})
        except ValueError as e:
            raise ValueError(f"ablation {name!r} ({describe(ablation)}) of {base.model}: {e}") from None
    return out


def settings(config: Config) -> dict[str, Any]:
    """What defines a variant's result, as JSON values (tuples become lists)."""
    _check_config(config)
    kept = {k: v for k, v in dataclasses.asdict(config).items() if k not in train.RUN_SETTINGS}
    return json.loads(json.dumps(kept))


def train_variant(config: Config, workdir, *, data_dir=None, progress: bool = True,
                  train_split: data.Dataset | None = None) -> dict[str, Any]:
    """Train one variant in ``workdir`` (or read its finished result) and evaluate it.

    Returns the row of the table: ``params`` (parameter count), ``train_top1`` (the
    training split, dropout off), ``test_top1``, ``test_top5``, ``test_loss``,
    ``train_seconds`` (training, of the call that finished it: a resumed run counts only
    its last part), ``seconds`` (that call, with the data and the evaluations), ``step``,
    ``model``. ``train_split``: the opened training split, to share between variants.
    """
    _check_config(config)
    workdir = Path(workdir)
    result_path = workdir / RESULT_FILE
    wanted = settings(config)
    done = read_result(result_path, wanted)
    if done is not None:
        return done
    model = config.build_model()
    began = time.perf_counter()
    trained = train.train_and_evaluate(config, workdir, data_dir=data_dir, progress=progress)
    if train_split is None:
        train_split = data.open_dataset(config.dataset, config.train_split, data_dir=data_dir,
                                        image_size=config.image_size)
    on_train = train.evaluate(model, trained["params"], train_split.batches(config.eval_batch_size),
                              mesh=train.data_mesh(config.num_devices))
    row = {"model": model.name, "params": model.num_params(), "train_top1": on_train["top1"],
           "train_loss": on_train["loss"], "test_top1": trained["eval"]["top1"], "test_top5": trained["eval"]["top5"],
           "test_loss": trained["eval"]["loss"], "step": trained["step"],
           "train_seconds": round(trained["train_seconds"], 1),
           "seconds": round(time.perf_counter() - began, 1)}
    record_result(result_path, wanted, row)
    return row


def run(base: Config, ablations: Mapping[str, Ablation], workdir, *, data_dir=None,
        progress: bool = True) -> dict[str, dict[str, Any]]:
    """Train every variant (each in ``workdir/<name>``, finished ones skipped) and return
    the table: ``{name: row of train_variant, plus "ablation": its description}``."""
    variants = variant_configs(base, ablations)
    rows, train_split = {}, None
    bar = tqdm(variants.items(), desc="ablations", unit="variant", disable=not progress)
    for name, config in bar:
        bar.set_postfix_str(name)
        if train_split is None and not (Path(workdir) / name / RESULT_FILE).is_file():
            train_split = data.open_dataset(config.dataset, config.train_split, data_dir=data_dir,
                                            image_size=config.image_size)
        row = train_variant(config, Path(workdir) / name, data_dir=data_dir, progress=progress,
                            train_split=train_split)
        rows[name] = {"ablation": describe(ablations[name]), **row}
    return rows


def table_markdown(rows: Mapping[str, Mapping[str, Any]]) -> str:
    """Table 3's layout: error rates in %, as the paper gives them, and the parameter count."""
    needed = ("ablation", "train_top1", "test_top1", "test_top5", "params", "train_seconds")
    if not rows:
        raise ValueError("table_markdown needs at least one row, got none")
    for name, r in rows.items():
        missing = [k for k in needed if k not in r]
        if missing:
            raise ValueError(f"row {name!r} must have {list(needed)} (a row of run); it lacks {missing}")
    lines = ["| variant | ablation | train top-1 error % | test top-1 error % | test top-5 error % | parameters | "
             "training time (s) |", "|---|---|---|---|---|---|---|"]
    for name, r in rows.items():
        lines.append(f"| {name} | {r['ablation']} | {100 * (1 - r['train_top1']):.2f} | "
                     f"{100 * (1 - r['test_top1']):.2f} | {100 * (1 - r['test_top5']):.2f} | {r['params']:,} | "
                     f"{r['train_seconds']:.0f} |")
    return "\n".join(lines) + "\n"
