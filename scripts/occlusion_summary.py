"""Dataset-wide numbers and a figure from a ``scripts/occlusion.py`` run's ``summary.csv``.

    python scripts/occlusion_summary.py outputs/occlusion_mnist --out results/occlusion_mnist

Writes ``<out>/summary.json`` (accuracy unoccluded, the distribution of the worst
occluder's true-class probability drop, how often an occluder changes the prediction)
and ``<out>/summary.png``: the drops' histogram, where the worst occluder sits (its
centre, all images), and the fraction of positions that change the prediction.
"""

import argparse
import csv
import json
from pathlib import Path

import numpy as np

from jaxvis import cli, plots

import matplotlib.pyplot as plt  # noqa: E402  (after jaxvis.plots has chosen the Agg backend)


def read(path: Path) -> dict[str, np.ndarray]:
    if not path.is_file():
        raise ValueError(f"no summary.csv at {path}: give the --out folder of scripts/occlusion.py")
    with path.open() as f:
        rows = list(csv.DictReader(f))
    if not rows:
        raise ValueError(f"{path} has no rows")
    return {k: np.array([float(r[k]) for r in rows]) for k in rows[0]}


def numbers(s: dict[str, np.ndarray]) -> dict:
    correct = s["predicted"] == s["label"]
    drop = s["drop"]
    return {
        "images": int(len(drop)),
        "accuracy_unoccluded": float(correct.mean()),
        "drop_quantiles": {f"{q:g}": float(np.quantile(drop, q)) for q in (0.1, 0.25, 0.5, 0.75, 0.9, 0.99)},
        "images_with_drop_over_0.5": float((drop > 0.5).mean()),
        "images_where_some_occluder_changes_the_prediction": float((s["flipped"] > 0).mean()),
        "mean_fraction_of_positions_changing_the_prediction": float(s["flipped"].mean()),
        # None (JSON null) when no image is classified correctly
        "of_correct_images_changed_by_some_occluder": float((s["flipped"][correct] > 0).mean()) if correct.any()
        else None,
    }


def figure(s: dict[str, np.ndarray], title: str):
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
    axes[0].hist(s["drop"], bins=np.linspace(0, 1, 41), color="0.3")
    axes[0].set_yscale("log")
    axes[0].set(xlabel="true-class probability drop at the worst position", ylabel="images",
                title="how much one occluder can hurt")
    size = int(max(s["row"].max(), s["col"].max()) + 2)
    hurt = s["drop"] > 0.01  # elsewhere every position ties and the first one is "worst"
    counts, _, _ = np.histogram2d(s["row"][hurt], s["col"][hurt], bins=size, range=[[0, size], [0, size]])
    shown = axes[1].imshow(counts, cmap="magma")
    fig.colorbar(shown, ax=axes[1], label="images")
    axes[1].set(title=f"centre of the worst occluder\n({hurt.sum()} images with a drop > 0.01)", xlabel="column",
                ylabel="row")
    axes[2].hist(s["flipped"], bins=np.linspace(0, 1, 41), color="0.3")
    axes[2].set_yscale("log")
    axes[2].set(xlabel="fraction of positions that change the prediction", ylabel="images",
                title="how often the label flips")
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", type=Path, help="the --out folder of scripts/occlusion.py")
    parser.add_argument("--out", type=Path, help="where to write (default: the run folder)")
    args = parser.parse_args(argv)
    out = cli.folder(args.out or args.run, "--out" if args.out else "the run")
    s = read(args.run / "summary.csv")
    result = numbers(s)
    settings = cli.read_json(args.run / "run.json") if (args.run / "run.json").is_file() else {}
    (out / "summary.json").write_text(json.dumps({"run": settings, **result}, indent=2) + "\n")
    get = lambda key: settings.get(key, "?")  # noqa: E731
    title = (f"{get('checkpoint')} on {get('dataset')}/{get('split')}, {get('patch')}x{get('patch')} occluder, "
             f"stride {get('stride')}")
    plots.save(figure(s, title), out / "summary.png")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    cli.run(main)
