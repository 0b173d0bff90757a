"""Zeiler & Fergus Sec. 4.1 / Fig. 6: the first-layer diagnosis, AlexNet-like vs ZFNet-like.

Trains two variants of a small ZFNet on the same data (Fashion-MNIST upsampled 28 -> 64)
that differ only where the paper changed AlexNet: conv1 7x7 stride 2 (ZFNet-like, maps
30 -> 15 -> 6 -> 3) against 11x11 stride 4 with a stride-1 conv2 (AlexNet-like, maps
15 -> 7 -> 7 -> 3). Both train as in the paper's Sec. 3 where it fits: SGD, momentum 0.9,
learning rate 1e-2 (with cosine decay), conv1 initialized from N(0, 1e-2), and *without*
filter renormalization. Then, side by side: the first-layer filters, the layer-2
deconvnet top-9 sheets, and the numbers: test accuracy, the fraction of dead relu1 maps
over the test set, the frequency coverage of the conv1 filters and their aliasing
(energy beyond the Nyquist frequency of their stride, along rows or columns).

Why conv1's initialization: jaxvis initializes kernels He-normal (std 0.2 for a 7x7x1
filter), and in a few epochs of SGD at 1e-2 conv1 moves only 13-16% away from it, so the
filters analysed would be the initial white noise. Started at the paper's 1e-2 they are
what training made. The other layers keep the He initialization (1e-2 everywhere does
not train this deep a network). ``Config`` has no initialization setting, so the script
writes the run's first checkpoint itself (step 1, whose batch is therefore skipped) and
``train_and_evaluate`` resumes from it; ``--conv1-std 0`` keeps the He initialization.

    python scripts/architecture.py                  # about 30 minutes on 2 shared CPU cores
    python scripts/architecture.py --quick --workdir /tmp/arch --out /tmp/arch/results   # a smoke run

Runs train in ``--workdir``/<variant> (resumable: a finished run is reused). Each run
keeps its initialization (step 1), a checkpoint after steps 10, 30, 100 and 250 and one at
the end of every epoch, for ``scripts/evolution.py`` (Fig. 4). Writes filters.png,
spectra.png, layer2_<variant>.png, results.json and README.md to ``--out``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shlex
import sys
import time
from pathlib import Path

import jax
import numpy as np

from jaxvis import checkpoint, cli, configs, data, plots, topk, train
from jaxvis._io import read_result, record_result
from jaxvis.analysis import filters
from jaxvis.plots import deconvnet

import matplotlib.pyplot as plt  # noqa: E402  (after jaxvis.plots has chosen the Agg backend)

VARIANTS = {
    "zfnet": {},
    "alexnet": {"conv1": {"kernel": 11, "stride": 4, "padding": 2}, "conv2": {"stride": 1, "padding": 2}},
}
LABELS = {"zfnet": "ZFNet-like (conv1 7x7 stride 2)", "alexnet": "AlexNet-like (conv1 11x11 stride 4)"}
FASHION = dict(dataset="fashion_mnist", mean=(0.2860,), std=(0.3530,), widths=(32, 64, 96, 96, 64), hidden=256,
               num_epochs=3, early_steps=(10, 30, 100, 250), train_split="train", maps=8)
QUICK = dict(dataset="mnist_sample", mean=(0.1307,), std=(0.3081,), widths=(4, 8, 8, 8, 8), hidden=16,
             num_epochs=1, early_steps=(), train_split="test", maps=4)
RESULT = "result.json"


def make_config(variant: str, setup: dict, batch_size: int, steps_per_epoch: int, conv1_std: float) -> configs.Config:
    """One variant's training run: a checkpoint at every epoch's end, all of them kept.
    The name records conv1's initialization, so that runs started differently never
    resume each other."""
    overrides = dict(channels=1, mean=setup["mean"], std=setup["std"], num_classes=10, input_size=64,
                     widths=setup["widths"], hidden=setup["hidden"])
    name = f"architecture_{variant}" + (f"_conv1_std_{conv1_std:g}" if conv1_std > 0 else "")
    return configs.Config(name=name, model="zfnet", dataset=setup["dataset"],
                          model_overrides=overrides, model_edits=VARIANTS[variant], image_size=64,
                          train_split=setup["train_split"], eval_split="test", num_epochs=setup["num_epochs"],
                          batch_size=batch_size, optimizer="sgd", learning_rate=1e-2, momentum=0.9,
                          schedule="cosine", filter_radius=None, checkpoint_every_steps=steps_per_epoch,
                          keep_checkpoints=1000, log_every_steps=50)


def start_with_conv1_std(config: configs.Config, workdir: Path, std: float, steps_per_epoch: int) -> None:
    """Write the run's step-1 checkpoint: the initialization ``train_and_evaluate`` would
    draw, with conv1's kernel redrawn from N(0, ``std``), and the optimizer state after a
    step with zero gradients (the schedule's count at 1, momentum 0). Training resumes
    from it, so the first batch of epoch 0 is not trained on."""
    model = config.build_model()
    key = jax.random.fold_in(jax.random.key(config.seed), 0)  # train._train's initialization key
    params = model.init(key)
    kernel = params["conv1"]["kernel"]
    params["conv1"]["kernel"] = std * jax.random.normal(jax.random.fold_in(key, 1), kernel.shape, kernel.dtype)
    tx = train.make_optimizer(config, steps_per_epoch)
    opt_state = jax.jit(lambda p: tx.update(jax.tree.map(jax.numpy.zeros_like, p), tx.init(p), p)[1])(params)
    # train_and_evaluate resumes only from a checkpoint with its own card
    ckpt = checkpoint.Checkpointer(workdir / "checkpoints", train.checkpoint_card(config), keep=config.keep_checkpoints)
    ckpt.save(1, {"params": params, "opt_state": opt_state})
    ckpt.close()


def train_variant(config: configs.Config, workdir: Path, early_steps, progress: bool, conv1_std: float = 0.0,
                  steps_per_epoch: int = 0) -> dict:
    """Train (or resume) one run, stopping first after each of ``early_steps`` so that
    those checkpoints exist too; a finished run's ``result.json`` is reused. With
    ``conv1_std`` > 0 a new run starts from :func:`start_with_conv1_std`."""
    done = read_result(workdir / RESULT, train.checkpoint_card(config))
    if done is not None:
        return done
    if conv1_std > 0 and not (workdir / "checkpoints").is_dir():
        start_with_conv1_std(config, workdir, conv1_std, steps_per_epoch)
    seconds, result = 0.0, None
    saved = checkpoint.saved_steps(workdir / "checkpoints") if (workdir / "checkpoints").is_dir() else []
    for stop in [s for s in early_steps if s > max(saved, default=0)] + [None]:
        result = train.train_and_evaluate(dataclasses.replace(config, max_steps=stop), workdir, progress=progress)
        seconds += result["train_seconds"]
    summary = {"eval": result["eval"], "train": result["train"], "step": result["step"],
               "train_seconds_this_call": seconds, "resumed": bool(saved), "data": result["data"]}
    record_result(workdir / RESULT, train.checkpoint_card(config), summary)
    return summary


def analyse(workdir: Path, test: data.Dataset, maps: int, seed: int, batch_size: int = 500) -> dict:
    """The Fig. 6 numbers of one trained run, its conv1 kernel, and its layer-2 top-9 patches."""
    model, params, _ = checkpoint.restore_model(workdir)
    kernel = np.asarray(params["conv1"]["kernel"])
    first = checkpoint.saved_steps(workdir)[0]
    first_kernel = np.asarray(checkpoint.restore_model(workdir, first)[1]["conv1"]["kernel"])
    stride = model.layer("conv1").stride[0]
    dead1, dead_ids = filters.dead_fraction(model, params, test.batches(batch_size), "relu1")
    rms = np.sqrt(np.mean(kernel ** 2, axis=(0, 1, 2)))
    top = topk.top_k(model, params, test.batches(batch_size), "relu2", k=9, one_per_image=True)
    dead2 = float(np.mean(np.asarray(top.value[:, 0]) <= 0))  # the strongest of the nine is the map's maximum
    every = topk.project_top_k(model, params, test, top, "relu2")
    chosen = np.sort(np.random.default_rng(seed).choice(top.value.shape[0], maps, replace=False))
    patches = topk.Patches(chosen, every.projection[chosen], every.patch[chosen], every.window[chosen])
    c, k, h, w, channels = every.projection.shape
    projections_HWIO = every.projection.reshape(c * k, h, w, channels).transpose(1, 2, 3, 0)
    numbers = {
        "model": model.name, "parameters": model.num_params(),
        "maps": {n: list(model.shapes[n][:2]) for n in ("conv1", "pool1", "conv2", "pool2", "conv5")},
        "relu2_receptive_field": list(model.receptive_field("relu2").size),
        "conv1": {"kernel": list(model.layer("conv1").kernel), "stride": stride},
        "conv1_moved": {"since_step": first,
                        "relative": float(np.linalg.norm(kernel - first_kernel) / np.linalg.norm(first_kernel))},
        "dead_fraction_relu1": dead1, "dead_maps_relu1": dead_ids.tolist(), "dead_fraction_relu2": dead2,
        "frequency_coverage": filters.frequency_coverage(kernel),
        "aliasing": filters.aliasing(kernel, stride),
        "aliasing_at_stride": {str(s): filters.aliasing(kernel, s) for s in (2, 4)},
        "filter_rms": {"max": float(rms.max()), "median": float(np.median(rms)), "min": float(rms.min()),
                       "max_over_median": float(rms.max() / np.median(rms))},
        "relu2_maps_shown": chosen.tolist(),
        # the input (28x28 upsampled) has almost no energy above 0.22 cycles/pixel: what the
        # projections hold above 1/4 comes from the network (the paper's aliasing artifacts)
        "relu2_projection_energy_above_quarter": filters.energy_above(projections_HWIO, 0.25),
        "relu2_projection_energy_above_eighth": filters.energy_above(projections_HWIO, 0.125),
    }
    return {"numbers": numbers, "model": model, "kernel": kernel, "patches": patches}


def filters_figure(kernels: dict[str, np.ndarray]):
    """Conv1 filters of each variant: each on its own scale (top), one scale per layer (bottom)."""
    own, shared = [], []
    for kernel in kernels.values():
        tiles = [plots.centred(kernel[..., o]) for o in range(kernel.shape[-1])]
        peak = np.abs(kernel).max()
        own.append(deconvnet.mosaic(np.stack(tiles), 8))
        shared.append(deconvnet.mosaic(np.stack([0.5 + 0.5 * kernel[..., o] / peak
                                                 for o in range(kernel.shape[-1])]), 8))
    fig = plots.grid([own, shared], ["each filter\non its own scale", "one scale\nper layer"],
                     [LABELS[v] for v in kernels], title="First-layer filters (no renormalization)", size=3.2)
    return fig


def spectra_figure(kernels: dict[str, np.ndarray]):
    """Mean radial spectrum of the conv1 filters, their peak frequencies, their RMS sizes."""
    fig, (ax1, ax2, ax3) = plt.subplots(1, 3, figsize=(13, 3.6))
    for variant, kernel in kernels.items():
        freqs, energy = filters.radial_spectrum(kernel)
        alive = energy.sum(axis=1) > 0
        ax1.plot(freqs, energy[alive].mean(axis=0), label=LABELS[variant])
        ax2.hist(freqs[np.argmax(energy[alive], axis=1)], bins=np.linspace(0, 0.5, 17), alpha=0.5,
                 label=LABELS[variant])
        rms = np.sqrt(np.mean(kernel ** 2, axis=(0, 1, 2)))
        ax3.plot(np.sort(rms)[::-1], "o-", ms=3, label=LABELS[variant])
    for ax in (ax1, ax2):
        for lo, _ in filters.BANDS.values():
            ax.axvline(lo, color="grey", lw=0.5)
        ax.axvline(0.25, color="C0", ls="--", lw=1)
        ax.axvline(0.125, color="C1", ls="--", lw=1)
        ax.set_xlabel("cycles / pixel (dashed: Nyquist of stride 2 and 4)")
    ax1.set_ylabel("share of filter energy")
    ax1.set_title("mean radial spectrum of conv1 filters", fontsize=9)
    ax2.set_ylabel("filters")
    ax2.set_title("peak frequency per filter (bands: low / mid / high)", fontsize=9)
    ax3.set_xlabel("filter, largest first")
    ax3.set_ylabel("RMS of the filter")
    ax3.set_title("filter sizes (no renormalization)", fontsize=9)
    ax3.legend(fontsize=7)
    fig.tight_layout()
    return fig


def claims(results: dict) -> list[str]:
    """The paper's Sec. 4.1 statements about AlexNet's first layers, checked against the numbers."""
    z, a = (results["variants"][v]["analysis"] for v in ("zfnet", "alexnet"))
    acc_z, acc_a = (results["variants"][v]["train"]["eval"]["top1"] for v in ("zfnet", "alexnet"))

    def check(claim: str, holds: bool, numbers: str) -> str:
        return f"- {claim}: **{'yes' if holds else 'no'}** ({numbers})"

    mixed = a["frequency_coverage"]["low"] > 0 and a["frequency_coverage"]["high"] > 0
    return [
        check("more dead relu1 maps in the AlexNet-like variant", a["dead_fraction_relu1"] > z["dead_fraction_relu1"],
              f"{a['dead_fraction_relu1']:.3f} vs {z['dead_fraction_relu1']:.3f}"),
        check("more aliasing in its first layer (energy above its stride's Nyquist)", a["aliasing"] > z["aliasing"],
              f"{a['aliasing']:.3f} beyond 1/8 vs {z['aliasing']:.3f} beyond 1/4 cycles/pixel, per axis"),
        check("less mid-frequency coverage", a["frequency_coverage"]["mid"] < z["frequency_coverage"]["mid"],
              f"{a['frequency_coverage']['mid']:.2f} vs {z['frequency_coverage']['mid']:.2f} of the filters peak "
              "in 1/8 to 1/4"),
        check("a mix of low- and high-frequency filters in it", mixed,
              f"low {a['frequency_coverage']['low']:.2f}, high {a['frequency_coverage']['high']:.2f}"),
        check("more high-frequency energy in its layer-2 projections",
              a["relu2_projection_energy_above_quarter"] > z["relu2_projection_energy_above_quarter"],
              f"{a['relu2_projection_energy_above_quarter']:.3f} vs {z['relu2_projection_energy_above_quarter']:.3f}"
              " above 1/4 cycles/pixel"),
        check("the ZFNet-like variant classifies better", acc_z > acc_a, f"{100 * acc_z:.2f}% vs {100 * acc_a:.2f}%"),
    ]


def readme(results: dict, command: str, others: list[str]) -> str:
    rows = []
    for variant, r in results["variants"].items():
        n, cov = r["analysis"], r["analysis"]["frequency_coverage"]
        rows.append(f"| {LABELS[variant]} | {100 * r['train']['eval']['top1']:.2f}% | "
                    f"{n['dead_fraction_relu1']:.3f} ({len(n['dead_maps_relu1'])}/{results['widths'][0]}) | "
                    f"{n['dead_fraction_relu2']:.3f} | {cov['low']:.2f} / {cov['mid']:.2f} / {cov['high']:.2f} | "
                    f"{n['aliasing']:.3f} (stride {n['conv1']['stride']}) | "
                    f"{n['aliasing_at_stride']['2']:.3f} / {n['aliasing_at_stride']['4']:.3f} | "
                    f"{n['filter_rms']['max_over_median']:.2f} | {n['relu2_projection_energy_above_quarter']:.3f} | "
                    f"{n['conv1_moved']['relative']:.2f} (step {n['conv1_moved']['since_step']}) | "
                    f"{r['train']['train_seconds_this_call']:.0f} s |")
    return f"""# Architecture diagnosis (Zeiler & Fergus Sec. 4.1, Fig. 6)

{results['data']}: both variants are `zfnet(channels=1, input_size=64, widths={tuple(results['widths'])},
hidden={results['hidden']})`; the AlexNet-like one edits `conv1` to 11x11 stride 4 (padding 2) and `conv2`
to stride 1 (padding 2). Training: {results['training']}. No filter renormalization.

    {command}

| variant | test top-1 | dead relu1 maps | dead relu2 | conv1 peak in low / mid / high | aliasing (own stride) | aliasing at stride 2 / 4 | max / median filter RMS | relu2 projections above 1/4 | conv1 moved since | training |
|---|---|---|---|---|---|---|---|---|---|---|
{chr(10).join(rows)}

- *dead*: maps whose activation is never above 0 on any of the {results['test_images']} test images.
- *peak band*: the radial frequency where each filter's spectrum (mean removed) peaks: low < 1/8,
  mid 1/8 to 1/4, high >= 1/4 cycles/pixel (`jaxvis.analysis.filters`).
- *aliasing*: the mean share of filter energy beyond the Nyquist frequency of the stride, 1/(2 stride),
  along rows or columns: what the subsampling folds onto lower frequencies. The stride-4 column is the AlexNet-like stride.
- *relu2 projections above 1/4*: the share of the energy of the top-9 deconvnet projections of
  every relu2 map (mean removed) above 1/4 cycles/pixel, where the input has almost none.
- *conv1 moved since*: `|W - W_s| / |W_s|` for conv1's kernel, `W_s` at the first saved checkpoint
  (step 1 is the initialization when the script draws conv1): below 1, the filters analysed are
  still mostly their initialization.
- Images are 28x28 upsampled (bilinear) to 64x64, so the input itself has almost no energy above
  about 28/64 x 0.5 = 0.22 cycles/pixel; filter energy above that is not constrained by the data.
- *training*: wall-clock of the training calls (including a test evaluation after each of the
  early stops and each epoch) on 2 shared CPU cores.

The paper's statements (Sec. 4.1), AlexNet-like against ZFNet-like, on these runs:

{chr(10).join(claims(results))}

One pair of runs, one seed each: differences of a few hundredths are within what another seed
could give.

Files: `filters.png` (conv1 filters, each on its own scale and on one scale per layer),
`spectra.png` (mean radial spectrum, peak frequencies, filter sizes), `layer2_zfnet.png` and
`layer2_alexnet.png` (relu2 top-9 deconvnet projections and image patches for the same
{results['maps_shown']} randomly chosen map indices), `results.json` (all numbers).
{"".join(f"{chr(10)}`{d}/`: another run of this script (its README gives the command)." for d in others)}
"""


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", default="outputs/architecture", help="training runs go to WORKDIR/<variant>")
    parser.add_argument("--out", default="results/architecture")
    parser.add_argument("--quick", action="store_true", help="a smoke run: tiny widths, 1 epoch of mnist_sample")
    parser.add_argument("--batch-size", type=cli.count, help="default 128 (--quick: 50)")
    parser.add_argument("--epochs", type=cli.count, help="default 3 (--quick: 1)")
    parser.add_argument("--conv1-std", type=float, default=1e-2,
                        help="initialize conv1 from N(0, this) as in the paper; 0 keeps jaxvis's He initialization")
    parser.add_argument("--seed", type=int, default=0, help="which relu2 maps the sheets show")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    setup = dict(QUICK if args.quick else FASHION)
    setup["num_epochs"] = args.epochs or setup["num_epochs"]
    batch_size = args.batch_size or (50 if args.quick else 128)
    count = data.open_dataset(setup["dataset"], setup["train_split"]).num_examples
    test = data.open_dataset(setup["dataset"], "test", image_size=64)
    out = cli.folder(args.out, "--out")

    variants, kernels, sheets = {}, {}, []
    for variant in VARIANTS:
        config = make_config(variant, setup, batch_size, count // batch_size, args.conv1_std)
        workdir = Path(args.workdir) / variant
        began = time.perf_counter()
        summary = train_variant(config, workdir, setup["early_steps"], not args.no_progress, args.conv1_std,
                                count // batch_size)
        print(f"{variant}: {100 * summary['eval']['top1']:.2f}% test top-1 "
              f"({time.perf_counter() - began:.0f} s, {workdir})")
        found = analyse(workdir, test, setup["maps"], args.seed)
        variants[variant] = {"train": summary, "analysis": found["numbers"], "workdir": str(workdir)}
        kernels[variant] = found["kernel"]
        path = out / f"layer2_{variant}.png"
        plots.save(deconvnet.layer_sheet(found["model"], found["patches"], "relu2"), path)
        sheets.append(path)
    paths = [out / "filters.png", out / "spectra.png"]
    plots.save(filters_figure(kernels), paths[0])
    plots.save(spectra_figure(kernels), paths[1])
    config = make_config("zfnet", setup, batch_size, count // batch_size, args.conv1_std)
    results = {
        "data": f"{setup['dataset']} ({setup['train_split']} split for training, test for evaluation), "
                "resized to 64x64",
        "widths": list(setup["widths"]), "hidden": setup["hidden"], "test_images": test.num_examples,
        "maps_shown": setup["maps"],
        "training": f"SGD momentum {config.momentum}, learning rate {config.learning_rate} with {config.schedule} "
                    f"decay, batch {batch_size}, {config.num_epochs} epoch(s), dropout 0.5 in fc6/fc7, "
                    "no weight decay, "
                    + (f"conv1 initialized from N(0, {args.conv1_std:g}) (the paper's), the other layers He-normal "
                       "(the run's first step is that initialization; its batch is not trained on)"
                       if args.conv1_std > 0 else "He-normal initialization (jaxvis's default) in every layer"),
        "conv1_init_std": args.conv1_std or None,
        "variants": variants,
    }
    command = " ".join(shlex.quote(a) for a in ["python", "scripts/architecture.py",
                                                 *(sys.argv[1:] if argv is None else argv)])
    (out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    others = sorted(p.parent.name for p in out.glob("*/README.md"))
    (out / "README.md").write_text(readme(results, command, others))
    cli.report([*sheets, *paths, out / "results.json", out / "README.md"])


if __name__ == "__main__":
    cli.run(main)
