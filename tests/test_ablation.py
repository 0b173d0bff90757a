"""Ablations: parameter counts against hand counts, a real (tiny) training run of an
ablated ZFNet on the bundled sample, the resumable CLI, and clear errors for ablations
that do not fit."""

import json
import re
import sys
from pathlib import Path

import jax
import numpy as np
import pytest

from jaxvis import checkpoint, configs, models, train
from jaxvis.analysis import ablation

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "scripts"))
import ablate  # noqa: E402

# ZFNet's shape at widths 8-16-16-16-16 on the sample resized to 64x64: maps 30, 15, 6, 3, 3, 3, 1
TINY_NET = {"channels": 1, "mean": (0.13,), "std": (0.31,), "num_classes": 10, "input_size": 64,
            "widths": (8, 16, 16, 16, 16), "hidden": 32}
TINY = dict(dataset="mnist_sample", train_split="test", model_overrides=TINY_NET, batch_size=40, max_steps=25,
            log_every_steps=5, learning_rate=3e-3, schedule="constant", checkpoint_every_steps=100, num_devices=1)
VARIANT = "without_fc6_7"  # the variant that learns fastest: no dropout, no narrow fc layers


def conv(k, c_in, c_out):
    return k * k * c_in * c_out + c_out


def dense(n_in, n_out):
    return n_in * n_out + n_out


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("ablation")
    base = ablation.fashion_zfnet(**TINY)
    ablations = {VARIANT: ablation.ablations_for(base.build_model())[VARIANT]}
    return base, workdir, ablation.run(base, ablations, workdir, progress=False)


def test_ablated_network_learns_and_has_its_hand_counted_parameters(trained):
    _, workdir, rows = trained
    row = rows[VARIANT]
    # conv1 7x7 1->8, conv2 5x5 8->16, conv3-5 3x3 16->16, pool5 1x1x16, (fc6, fc7 gone), fc8 16->10
    hand = conv(7, 1, 8) + conv(5, 8, 16) + 3 * conv(3, 16, 16) + dense(16, 10)
    assert row["params"] == hand == 10746
    _, params, _ = checkpoint.restore_model(workdir / VARIANT)
    assert sum(leaf.size for leaf in jax.tree.leaves(params)) == hand
    assert sorted(params) == ["conv1", "conv2", "conv3", "conv4", "conv5", "fc8"]
    losses = [r["loss"] for r in train.read_metrics(workdir / VARIANT) if r["split"] == "train"]
    assert len(losses) == 5 and losses[-1] < losses[0] - 0.5, f"training losses {losses} did not drop"
    # the training split is the test split here, both evaluated without dropout: the same number
    assert row["train_top1"] == row["test_top1"] > 0.3
    assert row["step"] == 25 and row["ablation"] == "without fc6, relu6, drop6, fc7, relu7, drop7"


def test_cli_skips_finished_variants_and_writes_the_table(trained, tmp_path):
    base, workdir, rows = trained
    result_file = workdir / VARIANT / ablation.RESULT_FILE
    before = result_file.stat().st_mtime_ns
    settings = [f"--set={k}={v!r}" for k, v in TINY.items()]
    ablate.main(["--workdir", str(workdir), "--out", str(tmp_path), "--variants", VARIANT, "--no-progress",
                 *settings])
    assert result_file.stat().st_mtime_ns == before  # not trained again
    table = json.loads((tmp_path / "table.json").read_text())
    assert table["variants"] == json.loads(json.dumps(rows))
    md = (tmp_path / "table.md").read_text()
    error = 100 * (1 - rows[VARIANT]["test_top1"])
    assert re.search(rf"\| {VARIANT} \| without fc6, .*, drop7 \| {error:.2f} \| {error:.2f} \| .* \| 10,746 \|", md)


def test_a_finished_variant_with_other_settings_is_refused(trained):
    base, workdir, _ = trained
    config = ablation.variant_configs(configs.replace(base, seed=3), {"v": (ablation.FC6 + ablation.FC7, {})})["v"]
    with pytest.raises(ValueError, match=r"other settings \(seed\)"):
        ablation.train_variant(config, workdir / VARIANT, progress=False)


def variants(bad):
    return ablation.variant_configs(ablation.fashion_zfnet(**TINY), {"good": ((), {}), "bad": bad})


COLUMNS = r"\['ablation', 'train_top1', 'test_top1', 'test_top5', 'params', 'train_seconds'\]"

BAD_INPUTS = [
    # variants that do not fit name the ablation and the offending layer
    ("without-flatten", lambda: variants((("flatten",), {})),
     r"ablation 'bad' \(without flatten\) of zfnet: .*dense layer 'fc6' needs a flat input, got shape \(1, 1, 16\)"),
    ("kernel-beyond-input", lambda: variants(((), {"conv5": {"kernel": 9}})),
     r"ablation 'bad' \(conv5.kernel=9\).*layer 'conv5': effective kernel 9 .* larger than its padded input 5"),
    ("unknown-layer", lambda: variants((("conv9",), {})), r"ablation 'bad'.*unknown layer of zfnet 'conv9'"),
    ("edit-of-a-removed-layer", lambda: variants((("fc7", "relu7", "drop7"), {"fc7": {"features": 8}})),
     r"unknown layer of zfnet-without-fc7-relu7-drop7 'fc7'"),
    ("no-edits", lambda: variants((("fc7",),)),
     r"ablation 'bad' must be \(model_without, model_edits\): a tuple of layer names and a dict"),
    ("without-a-string", lambda: variants(("fc7", {})),
     r"ablation 'bad' must be \(model_without, model_edits\).*got \('fc7', \{\}\)"),
    ("edit-not-a-dict", lambda: variants(((), {"fc6": 4096})),
     r"ablation 'bad' must be \(model_without, model_edits\).*got \(\(\), \{'fc6': 4096\}\)"),
    ("unknown-field", lambda: variants(((), {"fc6": {"width": 8}})),
     r"ablation 'bad'.*unknown field of layer 'fc6' 'width'"),
    ("no-ablations", lambda: ablation.variant_configs(ablation.fashion_zfnet(**TINY), {}),
     r"ablations must be a non-empty dict \{name: \(model_without, model_edits\)\}, got \{\}"),
    ("base-not-a-config", lambda: ablation.variant_configs("zfnet", ablation.ABLATIONS),
     r"expected a Config \(jaxvis.configs.get\), got str"),
    # the tables of variants
    ("two-conv-widths", lambda: ablation.paper_ablations((384, 384)),
     r"conv_widths must be the 3 widths of conv3-5, got \(384, 384\)"),
    ("zero-conv-width", lambda: ablation.paper_ablations((0, 384, 256)), r"conv3 width must be an integer >= 1, got 0"),
    ("fractional-conv-width", lambda: ablation.paper_ablations((384, 38.4, 256)),
     r"conv4 width must be an integer >= 1, got 38.4"),
    ("hidden-one", lambda: ablation.paper_ablations(hidden=1),
     r"hidden \(fc6-7 units; halved in a variant\) must be an integer >= 2, got 1"),
    ("hidden-fraction", lambda: ablation.paper_ablations(hidden=40.96),
     r"hidden \(fc6-7 units; halved in a variant\) must be an integer >= 2, got 40.96"),
    ("ablations-for-mnist", lambda: ablation.ablations_for(models.build("mnist_cnn")),
     r"unknown layer of mnist_cnn 'conv5'"),
    ("describe-one-part", lambda: ablation.describe((("fc7",),)),
     r"ablation must be \(model_without, model_edits\)"),
    ("fashion-unknown-setting", lambda: ablation.fashion_zfnet(num_epoch=3),
     r"unknown config setting 'num_epoch'.*Did you mean 'num_epochs'"),
    # results
    ("settings-not-a-config", lambda: ablation.settings({"model": "zfnet"}), r"expected a Config .*got dict"),
    ("train-variant-not-a-config", lambda: ablation.train_variant("zfnet", "/nonexistent"),
     r"expected a Config .*got str"),
    ("table-no-rows", lambda: ablation.table_markdown({}), r"table_markdown needs at least one row, got none"),
    ("table-row-lacks-columns", lambda: ablation.table_markdown({"v": {"ablation": "as is", "params": 3}}),
     r"row 'v' must have " + COLUMNS + r" \(a row of run\); it lacks \['train_top1', 'test_top1', 'test_top5', "
     r"'train_seconds'\]"),
]


@pytest.mark.parametrize("call, message", [case[1:] for case in BAD_INPUTS], ids=[case[0] for case in BAD_INPUTS])
def test_bad_input_is_a_value_error_saying_expected_and_given(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_imagenet_ablations_are_the_papers_networks():
    variants = ablation.variant_configs(configs.get("zfnet_imagenet"), ablation.ABLATIONS)
    counts = {name: c.build_model().num_params() for name, c in variants.items()}
    # ZFNet (Fig. 3): maps 110, 55, 26, 13, 13, 13, 6; 1000 classes
    convs = conv(7, 3, 96) + conv(5, 96, 256)
    c345 = conv(3, 256, 384) + conv(3, 384, 384) + conv(3, 384, 256)
    flat = 6 * 6 * 256
    assert counts["baseline"] == convs + c345 + dense(flat, 4096) + dense(4096, 4096) + dense(4096, 1000)
    assert counts["without_conv3_4"] == convs + conv(3, 256, 256) + dense(flat, 4096) + dense(4096, 4096) + \
        dense(4096, 1000)
    assert counts["without_fc6_7"] == convs + c345 + dense(flat, 1000)
    assert counts["fc6_7_narrow"] == convs + c345 + dense(flat, 2048) + dense(2048, 2048) + dense(2048, 1000)
    wide = conv(3, 256, 512) + conv(3, 512, 1024) + conv(3, 1024, 512)
    assert counts["fc6_7_wide_conv3_5_wide"] == convs + wide + dense(6 * 6 * 512, 8192) + dense(8192, 8192) + \
        dense(8192, 1000)
    assert len(counts) == 9 and ablation.ablations_for(variants["baseline"].build_model()) == ablation.ABLATIONS
    np.testing.assert_array_equal(variants["without_fc7"].model_without, ["fc7", "relu7", "drop7"])
