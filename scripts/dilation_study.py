"""The dilation study (issue 8): accuracy, class representations and a learned dilation for mnist_cnn on MNIST.

    python scripts/dilation_study.py --data-dir ../shared/data/mnist --results results/dilation
    python scripts/dilation_study.py --quick --workdir outputs/dilation_quick     # the bundled sample, 1-2 minutes

1. Fixed factors: mnist_cnn with each dilation (all four convolutions, padding = dilation)
   from each seed; test accuracy, parameter count, receptive field.
2. Learned factor (jaxvis.analysis.dilation.train_learned): each conv layer mixes the
   factors with learned softmax weights for the first part of the run, then commits to
   its strongest factor; from each seed (paired with the fixed runs of that seed: same
   initialization, data order and dropout).
3. Class representations of every network: gradient saliency maps of the same test
   digits (the first of each class in the bundled sample) and their measures (stroke
   mass, spread, entropy, neighbour correlation, deletion area), and the class models
   (the ``simonyan`` preset): the probability each reaches, their spread and smoothness.
4. Statistics and figures into ``--results``: ``study.json``, ``tables.md`` and PNGs.

Each run trains in its own folder under ``--workdir`` and writes ``result.json`` when it
is done (its analysis ``representations.json``); a rerun with the same settings skips
what is done. On a CPU the seeds of a factor train one after another (vmapping them is
slower there: grouped convolutions); ``--vmap`` trains them in one vmapped program per
factor (``jaxvis.train.train_many``), which suits a GPU.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import shutil
import time
from pathlib import Path

import jax
import numpy as np
from matplotlib.figure import Figure
from scipy import stats
from tqdm import tqdm

from jaxvis import checkpoint, cli, configs, data, models, plots, train
from jaxvis._io import write_text_atomically
from jaxvis.analysis import dilation
from jaxvis.plots import saliency as saliency_plots

# One epoch of Adam with a cosine schedule at batch 64 (937 steps): 98.75% at factor 1 with
# these widths, in about a CPU-minute (results/dilation/README.md: how these were chosen).
FULL = dict(dataset="mnist", train_split="train", num_epochs=1, batch_size=64, learning_rate=2.5e-3,
            widths=(16, 32), hidden=128, dropout=0.0, seeds=5, per_class=10, deletion_steps=28,
            class_model_steps=50, search_fraction=0.5)
QUICK = dict(dataset="mnist_sample", train_split="test", num_epochs=1, batch_size=100, learning_rate=2e-3,
             widths=(8, 16), hidden=32, dropout=0.25, seeds=2, per_class=1, deletion_steps=7,
             class_model_steps=10, search_fraction=0.5)
RESULT_FILE = "result.json"
ANALYSIS_DATASET = "mnist_sample"  # 1,000 MNIST test digits that ship with jaxvis: the same digits in every mode


def write_json(path, payload) -> None:
    """Write JSON atomically (a temporary file renamed), so a killed run leaves no half file."""
    write_text_atomically(path, json.dumps(payload, indent=2) + "\n")


def mean_std(values) -> tuple[float, float]:
    """Mean and sample standard deviation (``ddof=1``; 0 for one value)."""
    v = np.asarray(values, np.float64)
    return float(v.mean()), float(v.std(ddof=1)) if len(v) > 1 else 0.0


def build_config(s: dict, dilation_factor: int, seed: int) -> configs.Config:
    return configs.get("mnist_cnn", dataset=s["dataset"], train_split=s["train_split"], eval_split="test",
                       model_overrides={"dilation": dilation_factor, "widths": tuple(s["widths"]),
                                        "hidden": s["hidden"]},
                       model_edits={"drop5": {"rate": s["dropout"]}}, num_epochs=s["num_epochs"],
                       batch_size=s["batch_size"], optimizer="adam", learning_rate=s["learning_rate"],
                       schedule="cosine", seed=seed, checkpoint_every_steps=10**6, keep_checkpoints=1)


def check_settings(workdir: Path, settings: dict) -> None:
    """Record the study's settings, or refuse to resume a study made with other ones."""
    path = workdir / "settings.json"
    settings = json.loads(json.dumps(settings))
    if path.exists():
        before = json.loads(path.read_text())
        if before != settings:
            changed = {k: (before.get(k), settings.get(k)) for k in {*before, *settings}
                       if before.get(k) != settings.get(k)}
            raise ValueError(f"{workdir} holds a study with other settings {changed} (before, now); "
                             "use another --workdir or delete it")
    else:
        write_json(path, settings)


def fresh(run_dir: Path) -> None:
    """Remove what an interrupted run left, so that it starts again from scratch."""
    if run_dir.exists():
        shutil.rmtree(run_dir)


# ---------------------------------------------------------------------------------------
# Phase 1 and 2: training


def fixed_result(config: configs.Config, result: dict, index: int | None, checkpoint_dir: Path) -> dict:
    model = config.build_model()
    pick = (lambda v: v[index]) if index is not None else (lambda v: v)
    return {"dilation": config.model_overrides["dilation"], "seed": config.seed,
            "top1": pick(result["eval"]["top1"]), "loss": pick(result["eval"]["loss"]), "steps": result["step"],
            "train_seconds": result["train_seconds"], "num_params": model.num_params(),
            "receptive_field": {name: list(field.size) for name, field in model.fields.items()},
            "checkpoint": str(checkpoint_dir), "index": index}


def train_fixed(s: dict, workdir: Path, data_dir, use_vmap: bool, progress: bool) -> None:
    todo = [(d, seed) for d in s["dilations"] for seed in s["seed_list"]
            if not (workdir / f"fixed/d{d}/seed{seed}" / RESULT_FILE).exists()]
    bar = tqdm(total=len(todo), desc="fixed factors", unit="run", disable=not progress)
    for d in s["dilations"]:
        seeds = [seed for dd, seed in todo if dd == d]
        if not seeds:
            continue
        if use_vmap:
            run_dir = workdir / f"fixed/d{d}/vmap_{'_'.join(map(str, seeds))}"
            fresh(run_dir)
            result = train.train_many(build_config(s, d, seeds[0]), run_dir, seeds, data_dir=data_dir,
                                      progress=False)
            for k, seed in enumerate(seeds):
                out = fixed_result(build_config(s, d, seed), result, k, run_dir)
                write_json(workdir / f"fixed/d{d}/seed{seed}" / RESULT_FILE, out)
                bar.update()
            continue
        for seed in seeds:
            run_dir = workdir / f"fixed/d{d}/seed{seed}"
            fresh(run_dir)
            config = build_config(s, d, seed)
            began = time.process_time()
            result = train.train_and_evaluate(config, run_dir, data_dir=data_dir, progress=False)
            out = fixed_result(config, result, None, run_dir)
            write_json(run_dir / RESULT_FILE, {**out, "cpu_seconds": time.process_time() - began})
            bar.update()
            bar.set_postfix(dilation=d, seed=seed, top1=f"{result['eval']['top1']:.4f}")
    bar.close()


def train_learned(s: dict, workdir: Path, data_dir, progress: bool) -> None:
    search = dilation.Search(dilations=tuple(s["dilations"]), fraction=s["search_fraction"])
    todo = [seed for seed in s["seed_list"] if not (workdir / f"learned/seed{seed}" / RESULT_FILE).exists()]
    bar = tqdm(total=len(todo), desc="learned factor", unit="run", disable=not progress)
    for seed in todo:
        run_dir = workdir / f"learned/seed{seed}"
        fresh(run_dir)
        config = build_config(s, 1, seed)
        began = time.process_time()
        result = dilation.train_learned(config, run_dir, search, data_dir=data_dir, progress=False)
        model = result["model"]
        out = {"seed": seed, "top1": result["eval"]["top1"], "loss": result["eval"]["loss"], "steps": result["step"],
               "search_steps": result["search_steps"], "picks": result["picks"], "weights": result["weights"],
               "temperature": result["temperature"], "weights_at_temperature": result["weights_at_temperature"],
               "trajectory": result["trajectory"], "train_seconds": result["train_seconds"],
               "num_params": model.num_params(),
               "receptive_field": {name: list(field.size) for name, field in model.fields.items()},
               "checkpoint": str(run_dir / "checkpoints"), "index": None, "search": dataclasses.asdict(search),
               "cpu_seconds": time.process_time() - began}
        write_json(run_dir / RESULT_FILE, out)
        bar.update()
        bar.set_postfix(seed=seed, picks="".join(str(v) for v in result["picks"].values()),
                        top1=f"{result['eval']['top1']:.4f}")
    bar.close()


# ---------------------------------------------------------------------------------------
# Phase 3: class representations


def analysis_digits(per_class: int) -> tuple[np.ndarray, np.ndarray]:
    """The first ``per_class`` digits of each class of the bundled test sample, class by class."""
    ds = data.open_dataset(ANALYSIS_DATASET, "test")
    images, labels = next(iter(ds.batches(ds.num_examples)))
    index = cli.first_per_class(labels, per_class, ds.num_classes)
    return images[index], labels[index]


def run_dirs(s: dict, workdir: Path) -> list[Path]:
    return ([workdir / f"fixed/d{d}/seed{seed}" for d in s["dilations"] for seed in s["seed_list"]]
            + [workdir / f"learned/seed{seed}" for seed in s["seed_list"]])


def restore(run: dict):
    model, params, _ = checkpoint.restore_model(run["checkpoint"])
    if run["index"] is not None:
        params = jax.tree.map(lambda p: p[run["index"]], params)
    return model, params


def analyse(s: dict, workdir: Path, progress: bool) -> None:
    images, labels = analysis_digits(s["per_class"])
    todo = [r for r in run_dirs(s, workdir) if not (r / "representations.json").exists()]
    for run_dir in tqdm(todo, desc="class representations", unit="network", disable=not progress):
        model, params = restore(json.loads((run_dir / RESULT_FILE).read_text()))
        rep = dilation.representations(model, params, images, labels, deletion_steps=s["deletion_steps"],
                                       class_model_steps=s["class_model_steps"])
        np.savez_compressed(run_dir / "representations.npz", maps=rep["maps"], class_models=rep["class_models"])
        summary = {k: rep[k].tolist() for k in dilation.MEASURES}
        write_json(run_dir / "representations.json", summary)


# ---------------------------------------------------------------------------------------
# Phase 4: statistics, tables, figures


def load_runs(s: dict, workdir: Path) -> tuple[dict, dict]:
    fixed = {d: [json.loads((workdir / f"fixed/d{d}/seed{seed}" / RESULT_FILE).read_text())
                 for seed in s["seed_list"]] for d in s["dilations"]}
    learned = [json.loads((workdir / f"learned/seed{seed}" / RESULT_FILE).read_text())
               for seed in s["seed_list"]]
    for d in s["dilations"]:
        for run, seed in zip(fixed[d], s["seed_list"]):
            run["measures"] = json.loads((workdir / f"fixed/d{d}/seed{seed}/representations.json").read_text())
    for run, seed in zip(learned, s["seed_list"]):
        run["measures"] = json.loads((workdir / f"learned/seed{seed}/representations.json").read_text())
    return fixed, learned


def kruskal(groups) -> tuple[float, float]:
    """Kruskal-Wallis ``(H, p)``; NaN when every value is the same (scipy raises then)."""
    try:
        return tuple(map(float, stats.kruskal(*groups)))
    except ValueError:
        return float("nan"), float("nan")


def statistics(s: dict, fixed: dict, learned: list) -> dict:
    ds = s["dilations"]
    acc = {d: [r["top1"] for r in fixed[d]] for d in ds}
    out = {"accuracy": {str(d): dict(zip(("mean", "std"), mean_std(acc[d])), n=len(acc[d]),
                                       per_seed=acc[d], num_params=fixed[d][0]["num_params"],
                                       receptive_field=fixed[d][0]["receptive_field"]) for d in ds}}
    pairs = list(itertools.combinations(ds, 2))
    welch = [stats.ttest_ind(acc[a], acc[b], equal_var=False) for a, b in pairs]
    raw = [float(t.pvalue) for t in welch]
    out["pairwise_welch_holm"] = [
        {"a": a, "b": b, "difference": float(np.mean(acc[a]) - np.mean(acc[b])), "t": float(t.statistic),
         "p": p, "p_holm": float(q)} for (a, b), t, p, q in zip(pairs, welch, raw, dilation.holm(raw))]
    groups = [acc[d] for d in ds]
    out["anova"] = dict(zip(("F", "p"), map(float, stats.f_oneway(*groups))))
    out["kruskal"] = dict(zip(("H", "p"), kruskal(groups)))
    if len(ds) >= 3:
        out["friedman_paired_by_seed"] = dict(zip(("chi2", "p"), map(float, stats.friedmanchisquare(*groups))))

    learned_acc = [r["top1"] for r in learned]
    welch = [stats.ttest_ind(learned_acc, acc[d], equal_var=False) for d in ds]
    paired = [stats.ttest_rel(learned_acc, acc[d]) for d in ds]  # the same seed: the same init and data order
    out["learned"] = {
        "accuracy": dict(zip(("mean", "std"), mean_std(learned_acc)), per_seed=learned_acc),
        "best_fixed": max(ds, key=lambda d: np.mean(acc[d])),
        "vs_fixed": {str(d): {"difference": float(np.mean(learned_acc) - np.mean(acc[d])),
                              "welch_p": float(w.pvalue), "welch_p_holm": float(wh),
                              "paired_p": float(pt.pvalue), "paired_p_holm": float(ph)}
                     for d, w, pt, wh, ph in zip(ds, welch, paired, dilation.holm([w.pvalue for w in welch]),
                                                 dilation.holm([pt.pvalue for pt in paired]))},
        "picks": [r["picks"] for r in learned],
        "smallest_pick_weight_at_final_temperature": min(max(w) for r in learned
                                                         for w in r["weights_at_temperature"].values()),
        "consistency": {},
    }
    for layer in learned[0]["picks"]:
        picks = [r["picks"][layer] for r in learned]
        counts = [picks.count(d) for d in ds]
        out["learned"]["consistency"][layer] = {
            "counts": dict(zip(map(str, ds), counts)), "modal": ds[int(np.argmax(counts))],
            "p_uniform": dilation.pick_agreement_p(counts, len(ds))}

    images, _ = analysis_digits(s["per_class"])
    out["stroke_pixel_fraction"] = float(np.mean(images / 255.0 > 0.5))  # stroke mass of a flat map
    out["measures"] = {}
    for m in dilation.MEASURES:
        per_model = {d: [float(np.mean(r["measures"][m])) for r in fixed[d]] for d in ds}
        xs = [d for d in ds for _ in per_model[d]]
        ys = [v for d in ds for v in per_model[d]]
        spearman = stats.spearmanr(xs, ys)
        welch_p = [float(stats.ttest_ind(per_model[a], per_model[b], equal_var=False).pvalue) for a, b in pairs]
        out["measures"][m] = {
            "pairwise_welch_holm": {f"{a} vs {b}": float(q) for (a, b), q in zip(pairs, dilation.holm(welch_p))},
            "by_factor": {str(d): dict(zip(("mean", "std"), mean_std(per_model[d]))) for d in ds},
            "learned": dict(zip(("mean", "std"), mean_std([np.mean(r["measures"][m]) for r in learned]))),
            "anova_p": float(stats.f_oneway(*per_model.values()).pvalue),
            "kruskal_p": kruskal(per_model.values())[1],
            "spearman_rho": float(spearman.statistic), "spearman_p": float(spearman.pvalue)}
    return out


def fmt_p(p: float) -> str:
    if not np.isfinite(p):
        return "n/a"  # e.g. a t-test between identical constant samples
    return f"{p:.2g}" if p >= 1e-4 else f"{p:.1e}"


def tables(s: dict, st: dict, fixed: dict, learned: list) -> str:
    ds = s["dilations"]
    last = list(fixed[ds[0]][0]["receptive_field"])[-1]
    lines = ["## Accuracy (test top-1, %, mean ± std over seeds)", "",
             f"| factor | accuracy | per seed | parameters | receptive field of {last} |", "|---|---|---|---|---|"]
    for d in ds:
        a = st["accuracy"][str(d)]
        lines.append(f"| {d} | {100 * a['mean']:.2f} ± {100 * a['std']:.2f} | "
                     f"{' '.join(f'{100 * v:.2f}' for v in a['per_seed'])} | {a['num_params']:,} | "
                     f"{a['receptive_field'][last][0]} |")
    la = st["learned"]["accuracy"]
    lines.append(f"| learned | {100 * la['mean']:.2f} ± {100 * la['std']:.2f} | "
                 f"{' '.join(f'{100 * v:.2f}' for v in la['per_seed'])} | {learned[0]['num_params']:,} | "
                 f"{' / '.join(str(r['receptive_field'][last][0]) for r in learned)} |")
    lines += ["", "Pairwise Welch t-tests, Holm-adjusted over the pairs:", "",
              "| pair | difference (points) | t | p | p (Holm) |", "|---|---|---|---|---|"]
    for row in st["pairwise_welch_holm"]:
        lines.append(f"| {row['a']} vs {row['b']} | {100 * row['difference']:+.3f} | {row['t']:.2f} | "
                     f"{fmt_p(row['p'])} | {fmt_p(row['p_holm'])} |")
    lines += ["", f"One-way ANOVA: F = {st['anova']['F']:.2f}, p = {fmt_p(st['anova']['p'])}; "
              f"Kruskal-Wallis: H = {st['kruskal']['H']:.2f}, p = {fmt_p(st['kruskal']['p'])}"
              + (f"; Friedman (paired by seed): chi2 = {st['friedman_paired_by_seed']['chi2']:.2f}, "
                 f"p = {fmt_p(st['friedman_paired_by_seed']['p'])}" if "friedman_paired_by_seed" in st else ""), ""]

    layers = list(learned[0]["picks"])
    lines += ["## Learned dilation", "",
              "Pick per layer (weights at temperature 1 at the end of the search, factors "
              f"{', '.join(map(str, ds))}):", "",
              "| seed | " + " | ".join(layers) + " | accuracy |", "|---|" + "---|" * (len(layers) + 1)]
    for r in learned:
        cells = [f"**{r['picks'][n]}** ({' '.join(f'{w:.2f}' for w in r['weights'][n])})" for n in layers]
        lines.append(f"| {r['seed']} | " + " | ".join(cells) + f" | {100 * r['top1']:.2f} |")
    lines += ["", "| layer | picks per factor | modal | P(agreement this strong by chance) |", "|---|---|---|---|"]
    for n in layers:
        c = st["learned"]["consistency"][n]
        lines.append(f"| {n} | {' '.join(f'{d}:{k}' for d, k in c['counts'].items())} | {c['modal']} | "
                     f"{fmt_p(c['p_uniform'])} |")
    lv = st["learned"]
    lines += ["", f"At the final temperature ({learned[0]['temperature']:g}) every layer's picked factor had weight >= "
              f"{lv['smallest_pick_weight_at_final_temperature']:.3f} when the layers committed.", "",
              "Learned vs each fixed factor (Holm-adjusted over the factors; paired: the same seed, so the same "
              "initialization and data order):", "",
              "| fixed factor | difference (points) | Welch p | Welch p (Holm) | paired p | paired p (Holm) |",
              "|---|---|---|---|---|---|"]
    for d, v in lv["vs_fixed"].items():
        lines.append(f"| {d} | {100 * v['difference']:+.3f} | {fmt_p(v['welch_p'])} | {fmt_p(v['welch_p_holm'])} | "
                     f"{fmt_p(v['paired_p'])} | {fmt_p(v['paired_p_holm'])} |")
    lines.append("")

    lines += ["## Class representations (mean over the analysis digits or classes, then mean ± std over seeds)", "",
              "| measure | " + " | ".join(f"factor {d}" for d in ds) + " | learned | ANOVA p | Kruskal p | "
              "Spearman rho with factor (p) | " + ", ".join(f"{a}v{b}" for a, b in zip(ds, ds[1:]))
              + " (Welch, Holm over all pairs) |", "|---|" + "---|" * (len(ds) + 5)]
    for m, v in st["measures"].items():
        cells = [f"{v['by_factor'][str(d)]['mean']:.3f} ± {v['by_factor'][str(d)]['std']:.3f}" for d in ds]
        lines.append(f"| {m} | " + " | ".join(cells) + f" | {v['learned']['mean']:.3f} ± {v['learned']['std']:.3f} | "
                     f"{fmt_p(v['anova_p'])} | {fmt_p(v['kruskal_p'])} | {v['spearman_rho']:+.2f} "
                     f"({fmt_p(v['spearman_p'])}) | "
                     + ", ".join(fmt_p(v["pairwise_welch_holm"][f"{a} vs {b}"]) for a, b in zip(ds, ds[1:])) + " |")
    lines += ["", f"A map spread evenly over the image would put {st['stroke_pixel_fraction']:.3f} of its mass on "
              "strokes (the share of pixels above 0.5). ANOVA and Kruskal-Wallis compare the fixed factors; "
              "Spearman's rho is over all fixed-factor networks."]
    return "\n".join(lines) + "\n"


def figures(s: dict, workdir: Path, out: Path, fixed: dict, learned: list, st: dict) -> list[Path]:
    ds, seed = s["dilations"], s["seed_list"][0]
    columns = [f"d={d}" for d in ds] + ["learned"]
    dirs = [workdir / f"fixed/d{d}/seed{seed}" for d in ds] + [workdir / f"learned/seed{seed}"]
    arrays = [np.load(d / "representations.npz") for d in dirs]
    measures = [fixed[d][0]["measures"] for d in ds] + [learned[0]["measures"]]
    model = models.mnist_cnn()  # only its normalization is used, the same for every network
    paths = []

    fig = Figure(figsize=(5.5, 3.4))
    ax = fig.subplots()
    for i, d in enumerate(ds):
        acc = 100 * np.asarray(st["accuracy"][str(d)]["per_seed"])
        ax.scatter(np.full(len(acc), i), acc, s=12, color="0.5")
        ax.errorbar(i + 0.15, acc.mean(), acc.std(ddof=1), fmt="o", color="C0", capsize=3)
    acc = 100 * np.asarray(st["learned"]["accuracy"]["per_seed"])
    ax.scatter(np.full(len(acc), len(ds)), acc, s=12, color="0.5")
    ax.errorbar(len(ds) + 0.15, acc.mean(), acc.std(ddof=1), fmt="o", color="C3", capsize=3)
    ax.set_xticks(range(len(columns)), columns)
    ax.set_ylabel("test accuracy (%)")
    ax.set_title("mnist_cnn by dilation factor (dots: seeds; bars: mean ± std)", fontsize=9)
    fig.tight_layout()
    paths.append(out / "accuracy.png")
    plots.save(fig, paths[-1])

    images, labels = analysis_digits(s["per_class"])
    first = [int(np.flatnonzero(labels == c)[0]) for c in range(10)]
    rows = [[plots.pixels(model, model.normalize(images[i:i + 1])[0])]
            + [saliency_plots.scaled(a["maps"][i]) for a in arrays] for i in first]
    fig = plots.grid(rows, [str(c) for c in range(10)], ["digit"] + columns,
                     title=f"Saliency |dS_c/dI| of the true class (seed {seed}), each map on its own scale")
    paths.append(out / "saliency.png")
    plots.save(fig, paths[-1])

    class_images = {c: a["class_models"] for c, a in zip(columns, arrays)}
    probabilities = {c: np.asarray(m["class_probability"]) for c, m in zip(columns, measures)}
    fig = saliency_plots.class_models_grid(model, class_images, probabilities, [str(k) for k in range(10)])
    paths.append(out / "class_models.png")
    plots.save(fig, paths[-1])

    names = list(dilation.MEASURES)
    cols = (len(names) + 1) // 2
    fig = Figure(figsize=(2.8 * cols, 5.4))
    for ax, m in zip(fig.subplots(2, cols).ravel(), names):
        for i, d in enumerate(ds):
            values = [np.mean(r["measures"][m]) for r in fixed[d]]
            ax.scatter(np.full(len(values), i), values, s=10, color="0.5")
            ax.errorbar(i + 0.15, np.mean(values), np.std(values, ddof=1), fmt="o", color="C0", capsize=3)
        values = [np.mean(r["measures"][m]) for r in learned]
        ax.scatter(np.full(len(values), len(ds)), values, s=10, color="0.5")
        ax.errorbar(len(ds) + 0.15, np.mean(values), np.std(values, ddof=1), fmt="o", color="C3", capsize=3)
        ax.set_xticks(range(len(columns)), [c.removeprefix("d=") for c in columns], fontsize=7)
        ax.set_title(m.replace("_", " "), fontsize=9)
        if m == "stroke_mass":
            ax.axhline(st["stroke_pixel_fraction"], color="0.6", ls="--", lw=0.8, label="flat map")
            ax.legend(fontsize=7)
        if m == "class_probability":
            ax.set_ylim(0, 1.05)
    fig.suptitle("Class representations by dilation factor (dots: seeds; bars: mean ± std over seeds)", fontsize=9)
    fig.tight_layout()
    paths.append(out / "measures.png")
    plots.save(fig, paths[-1])

    layers = list(learned[0]["picks"])
    fig = Figure(figsize=(3.0 * len(layers), 5.2))
    axes = fig.subplots(2, len(layers), sharex=True, squeeze=False)
    for j, layer in enumerate(layers):
        for r in learned:
            steps = np.asarray(r["trajectory"]["step"])
            w_SD = np.asarray(r["trajectory"][layer])
            search = dilation.Search(**{k: tuple(v) if isinstance(v, list) else v for k, v in r["search"].items()})
            # softmax(logits / T) = w ** (1 / T), renormalized, for w = softmax(logits)
            power_SD = np.log(np.maximum(w_SD, 1e-30)) / search.temperature_at(steps, r["search_steps"])[:, None]
            effective_SD = np.exp(power_SD - power_SD.max(axis=1, keepdims=True))
            effective_SD /= effective_SD.sum(axis=1, keepdims=True)
            for row, values in enumerate((w_SD, effective_SD)):
                for k, d in enumerate(ds):
                    axes[row, j].plot(steps, values[:, k], color=f"C{k}", lw=0.9,
                                      label=f"d={d}" if r is learned[0] else None)
        axes[0, j].set_title(layer, fontsize=9)
        axes[1, j].set_xlabel("step", fontsize=8)
        for row in range(2):
            axes[row, j].set_ylim(0, 1)
    axes[0, 0].set_ylabel("softmax(logits)", fontsize=8)
    axes[1, 0].set_ylabel("softmax(logits / T), as trained", fontsize=8)
    axes[0, 0].legend(fontsize=7)
    fig.suptitle("Learned mixture weights during the search (one line per seed and factor); "
                 "the temperature T falls from 1 to 0.1, then each layer commits", fontsize=9)
    fig.tight_layout()
    paths.append(out / "learned_weights.png")
    plots.save(fig, paths[-1])
    return paths


# ---------------------------------------------------------------------------------------


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", default="outputs/dilation_study", help="one folder per run goes here")
    parser.add_argument("--results", help="where study.json, tables.md and the figures go (default: WORKDIR/results)")
    parser.add_argument("--data-dir", help="where MNIST is (default: $JAXVIS_DATA_DIR, then tfds)")
    parser.add_argument("--quick", action="store_true",
                        help="a smoke run: few steps, two seeds, tiny widths, trained and tested on the bundled "
                             "1,000-digit sample (no data directory needed)")
    parser.add_argument("--dilations", type=int, nargs="+", default=list(dilation.DILATIONS))
    parser.add_argument("--seeds", type=int, help="seeds 0 .. SEEDS-1 (default 5; 2 with --quick)")
    parser.add_argument("--vmap", action="store_true",
                        help="train the seeds of each factor in one vmapped program (faster on a GPU, slower on a CPU)")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)

    s = dict(QUICK if args.quick else FULL)
    s["dilations"] = args.dilations
    s["seed_list"] = list(range(args.seeds if args.seeds is not None else s.pop("seeds")))
    s.pop("seeds", None)
    base = build_config(s, 1, 0).build_model()
    dilation.check_dilations(base, args.dilations)  # a bad factor fails here, naming the layer, before any work
    if len(set(args.dilations)) != len(args.dilations) or len(args.dilations) < 2:
        raise ValueError(f"give at least two distinct dilation factors, got {args.dilations}")
    if len(s["seed_list"]) < 2:
        raise ValueError("the statistics need at least two seeds")
    workdir = cli.folder(args.workdir, "--workdir")
    out = cli.folder(args.results or workdir / "results", "--results")
    check_settings(workdir, s)
    # Seeds of one factor compile identical programs: the persistent cache compiles each once
    # (XLA compilation is most of a short run's time on a CPU).
    jax.config.update("jax_compilation_cache_dir", str(workdir / "compilation_cache"))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    progress = not args.no_progress
    data_dir = None if args.quick else args.data_dir

    seconds, cpu_seconds = {}, {}
    for phase, run in (("fixed", lambda: train_fixed(s, workdir, data_dir, args.vmap, progress)),
                       ("learned", lambda: train_learned(s, workdir, data_dir, progress)),
                       ("representations", lambda: analyse(s, workdir, progress))):
        began, began_cpu = time.time(), time.process_time()
        run()
        seconds[phase] = round(time.time() - began, 1)
        cpu_seconds[phase] = round(time.process_time() - began_cpu, 1)

    fixed, learned = load_runs(s, workdir)
    st = statistics(s, fixed, learned)
    text = tables(s, st, fixed, learned)
    paths = [out / "tables.md", out / "study.json"]
    paths[0].write_text(text)
    def summary(run: dict) -> dict:
        """A run without its checkpoint path, its measures averaged over digits (classes)."""
        return {**{k: v for k, v in run.items() if k not in ("checkpoint", "measures")},
                "measures": {m: float(np.mean(v)) for m, v in run["measures"].items()}}

    runs = {"fixed": {str(d): [summary(r) for r in fixed[d]] for d in s["dilations"]},
            "learned": [summary(r) for r in learned]}
    write_json(paths[1], {"settings": s, "statistics": st, "runs": runs, "seconds_this_call": seconds,
                                   "cpu_seconds_this_call": cpu_seconds})
    paths += figures(s, workdir, out, fixed, learned, st)
    print(text)
    print(f"phases this call: wall {seconds} s, CPU {cpu_seconds} s")
    for path in paths:
        print(f"wrote {path}")


if __name__ == "__main__":
    cli.run(main)
