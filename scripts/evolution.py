"""Zeiler & Fergus Fig. 4: how the features of chosen maps evolve during training.

Reads every checkpoint of a training workdir (all saved steps), finds for a few randomly
chosen maps of each layer the strongest activation over the training set at each step,
and projects it with the deconvnet: one row per map, one column per checkpoint.

    python scripts/architecture.py           # trains outputs/architecture/zfnet, keeping every epoch
    python scripts/evolution.py --checkpoint outputs/architecture/zfnet --out results/evolution

Writes evolution.png, evolution.json and README.md to ``--out``. Each checkpoint's result
is kept in ``--out/.partial`` until the end, so a killed run resumes from the next one.
"""

from __future__ import annotations

import dataclasses
import json
import shlex
import shutil
import sys
import time
from pathlib import Path

import numpy as np
from tqdm import tqdm

from jaxvis import checkpoint, cli, data, plots, train
from jaxvis._io import write_atomically
from jaxvis.analysis import evolution
from jaxvis.plots.evolution import evolution_grid

SETTLED = 0.9  # a layer has settled once its chosen filters have come this share of their way, for good


def settled_at(steps, progress_S) -> int:
    """The first step from which ``progress_S`` stays at or above :data:`SETTLED`."""
    above = np.asarray(progress_S) >= SETTLED
    first = len(above) - int(np.argmin(above[::-1])) if not above.all() else 0
    return steps[min(first, len(steps) - 1)]


def table(results: dict, key: str, settled: bool = False) -> str:
    """Layers x checkpoints of ``results["layers"][layer][key]``, optionally with the settling step."""
    heads = [f"step {s} (epoch {e:.2f})" for s, e in zip(results["steps"], results["epochs"])]
    heads += ["settled from step"] if settled else []
    lines = ["| layer | " + " | ".join(heads) + " |", "|---" * (len(heads) + 1) + "|"]
    for layer, r in results["layers"].items():
        cells = [f"{v:.2f}" for v in r[key]] + ([str(r["settled_at_step"])] if settled else [])
        lines.append(f"| {layer} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def readme(results: dict, command: str) -> str:
    acc = ", ".join(f"step {s}: {100 * a:.1f}%" for s, a in zip(results["steps"], results["test_top1"])
                    if a is not None)
    return f"""# Feature evolution during training (Zeiler & Fergus Fig. 4)

`{results['model']}` trained in `{results['workdir']}` ({results['data']}). For {results['maps_per_layer']}
randomly chosen maps of each of {', '.join(results['layers'])}, the strongest activation over the
{results['images']} {results['split']} images at each saved checkpoint, projected alone with the
deconvnet and cropped to the part of the unit's receptive field inside the image (`evolution.png`:
one row per map, one column per checkpoint, each cell on its own scale and titled with the
activation's value).

    {command}

Test top-1 at each checkpoint: {acc}.

How far each chosen map's filter (the kernel of the convolution that makes the map) has come
from the first checkpoint to the last, `1 - |W - W_last| / |W_first - W_last|`, mean over the
maps; *settled*: from this checkpoint on at least {SETTLED}:

{table(results, "filter_progress_mean", settled=True)}

Cosine between each chosen map's filter and its filter at the last checkpoint, mean over the
maps (near 1 from the start means that training changed the filter little compared with its
initialization):

{table(results, "filter_cosine_to_last_mean")}

Share of the chosen maps whose strongest activation is in the same image as at the last
checkpoint:

{table(results, "same_image_as_last")}

{results['seconds']:.0f} s on 2 shared CPU cores. `evolution.json` holds every value, image index and position.
"""


PARTIAL = ".partial"  # one file per finished checkpoint while the script runs


def snapshots_evolution(model, snapshots, images, maps, batch_size: int, partial: Path, run: dict):
    """:func:`jaxvis.analysis.evolution.evolution` checkpoint by checkpoint, each one's
    result saved in ``partial`` as it finishes, so that a killed run resumes from the
    next (a saved result counts only if ``run``, the settings, is the same)."""
    fields = [f.name for f in dataclasses.fields(evolution.LayerEvolution) if f.name != "maps"]
    parts = []
    with tqdm(total=len(snapshots), unit="checkpoint", dynamic_ncols=True) as bar:
        for step, params in snapshots:
            path = partial / f"step_{step}.npz"
            found = None
            if path.is_file():
                with np.load(path) as f:
                    if json.loads(str(f["run"])) == run:
                        found = {layer: {k: f[f"{layer}/{k}"] for k in fields} for layer in maps}
            if found is None:
                one = evolution.evolution(model, [(step, params)], images, maps, batch_size=batch_size)
                found = {layer: {k: getattr(one.layers[layer], k) for k in fields} for layer in maps}
                arrays = {f"{layer}/{k}": v for layer, values in found.items() for k, v in values.items()}
                write_atomically(path, lambda f, arrays=arrays: np.savez(f, run=json.dumps(run), **arrays))
            parts.append(found)
            bar.update()
    layers = {layer: evolution.LayerEvolution(np.asarray(maps[layer], np.int32),
                                              **{k: np.concatenate([part[layer][k] for part in parts]) for k in fields})
              for layer in maps}
    return evolution.Evolution(tuple(step for step, _ in snapshots), layers, model.input_shape[:2])


def main(argv=None) -> None:
    parser = cli.parser(__doc__, out="results/evolution", checkpoint="outputs/architecture/zfnet", dataset=None,
                        weights=False)  # it reads every saved step of a training run: one weights file is not one
    parser.add_argument("--split", help="which split to search (default: the run's training split, as in the paper)")
    parser.add_argument("--data-dir", help="where the dataset is (default: $JAXVIS_DATA_DIR, then tfds)")
    parser.add_argument("--limit", type=cli.count, help="search only the first N images")
    parser.add_argument("--layers", nargs="+", default=["relu1", "relu2", "relu3", "relu4", "relu5"])
    parser.add_argument("--maps", type=cli.count, default=3, help="randomly chosen maps per layer")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch-size", type=cli.count, default=500)
    args = parser.parse_args(argv)
    began = time.perf_counter()
    steps = checkpoint.saved_steps(args.checkpoint)
    if not steps:
        raise ValueError(f"{args.checkpoint} has no saved checkpoints: expected a training workdir (or its "
                         "checkpoints folder) with a folder per saved step")
    snapshots, card = [], None
    for step in steps:
        model, params, card = checkpoint.restore_model(args.checkpoint, step)
        snapshots.append((step, params))
    for layer in args.layers:
        model.check_layer(layer, spatial=True)
        if args.maps > model.shapes[layer][-1]:
            raise ValueError(f"--maps {args.maps} is more than {layer}'s {model.shapes[layer][-1]} maps")
    config = card["config"]
    split = args.split or config["train_split"]
    dataset = data.open_dataset(card["dataset"], split, data_dir=args.data_dir, image_size=config.get("image_size"))
    images = dataset if args.limit is None else next(iter(dataset.batches(args.limit)))[0]
    rng = np.random.default_rng(args.seed)
    maps = {layer: np.sort(rng.choice(model.shapes[layer][-1], args.maps, replace=False)) for layer in args.layers}

    out = cli.output_dir(args)
    run = {"checkpoint": str(Path(args.checkpoint).resolve()), "split": split, "limit": args.limit,
           "maps": {layer: ids.tolist() for layer, ids in maps.items()}}
    evo = snapshots_evolution(model, snapshots, images, maps, args.batch_size, out / PARTIAL, run)
    cosine = evolution.filter_similarity(model, snapshots, maps)
    progress = evolution.filter_progress(model, snapshots, maps)
    train_count = data.open_dataset(card["dataset"], config["train_split"], data_dir=args.data_dir).num_examples
    steps_per_epoch = train_count // config["batch_size"]
    epochs = [s / steps_per_epoch for s in steps]
    workdir = Path(args.checkpoint)
    tests = {}
    if (workdir / train.METRICS_FILE).is_file():
        tests = {r["step"]: r["top1"] for r in train.read_metrics(workdir) if r["split"] == config["eval_split"]}
    top1 = [tests.get(s) for s in steps]
    labels = [f"step {s}\nepoch {e:.2g}" + (f"\n{100 * a:.0f}%" if a is not None else "")
              for s, e, a in zip(steps, epochs, top1)]

    figure = out / "evolution.png"
    title = f"{model.name}: strongest activation\nper map over {len(images)} {split} images,\nprojected (deconvnet)"
    plots.save(evolution_grid(evo, labels, title=title), figure)
    layers = {}
    for layer, found in evo.layers.items():
        last = found.image[-1]
        layers[layer] = {
            "maps": found.maps.tolist(), "value": found.value.tolist(), "image": found.image.tolist(),
            "row": found.row.tolist(), "col": found.col.tolist(),
            "filter_cosine_to_last": cosine[layer].tolist(),
            "filter_cosine_to_last_mean": cosine[layer].mean(axis=1).tolist(),
            "filter_progress": progress[layer].tolist(),
            "filter_progress_mean": progress[layer].mean(axis=1).tolist(),
            "settled_at_step": settled_at(steps, progress[layer].mean(axis=1)),
            "same_image_as_last": (found.image == last[None]).mean(axis=1).tolist(),
        }
    results = {"model": model.name, "workdir": str(args.checkpoint), "data": dataset.where, "split": split,
               "images": len(images), "maps_per_layer": args.maps, "steps": steps, "epochs": epochs,
               "test_top1": top1, "layers": layers, "seconds": time.perf_counter() - began}
    command = "python " + " ".join(shlex.quote(a) for a in ["scripts/evolution.py",
                                                             *(sys.argv[1:] if argv is None else argv)])
    (out / "evolution.json").write_text(json.dumps(results, indent=2) + "\n")
    (out / "README.md").write_text(readme(results, command))
    shutil.rmtree(out / PARTIAL, ignore_errors=True)
    cli.report([figure, out / "evolution.json", out / "README.md"])


if __name__ == "__main__":
    cli.run(main)
