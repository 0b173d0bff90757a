"""Occlusion maps of a whole split (Zeiler & Fergus Fig. 7), sharded over the local devices, resumable.

    python scripts/occlusion.py --checkpoint checkpoints/mnist_cnn --dataset mnist --split test \\
        --data-dir ../shared/data/mnist --out outputs/occlusion_mnist --patch 4 --stride 1

Writes ``<out>/shard_00000.npz``, ... (``--shard-size`` images each: every map of
:class:`jaxvis.occlusion.OcclusionMaps` and the per-image summary), ``<out>/summary.csv``
(one row per image: true-class probability unoccluded and at the worst position, the
drop, the worst occluder's centre, the attribution peak, the fraction of positions that
change the prediction) and ``<out>/run.json`` (the settings). Each shard is written to a
temporary file and renamed, so a killed run started again with the same command skips
the finished shards and recomputes nothing. Each call's occluder positions are spread
over all local devices (a ``data`` mesh axis).
"""

import json
from pathlib import Path

import jax
import numpy as np
from jax.sharding import Mesh
from tqdm import tqdm

from jaxvis import cli, data, occlusion
from jaxvis._io import write_atomically, write_text_atomically

SETTINGS = ("checkpoint", "dataset", "split", "patch", "stride", "fill", "layer", "method", "tau", "coarse_stride",
            "drill_fraction", "score", "shard_size", "limit")


def check_settings(out: Path, settings: dict) -> bool:
    """Refuse to resume a run made with other settings; True if ``out`` has a run of these."""
    path = out / "run.json"
    if not path.exists():
        return False
    before = cli.read_json(path)
    if before != settings:
        changed = {k: (before.get(k), settings[k]) for k in settings if before.get(k) != settings[k]}
        raise SystemExit(f"{out} holds a run with other settings {changed} (before, now); "
                         "use another --out or delete it")
    return True


def finished(shard: Path) -> bool:
    """Whether a shard was written (atomically, so whole); a damaged one is an error that names it."""
    if not shard.exists():
        return False
    try:
        with np.load(shard) as f:
            f["index"]
    except Exception as err:
        raise SystemExit(f"shard {shard} is damaged ({type(err).__name__}: {err}); delete it and run again to "
                         "recompute it") from err
    return True


def write_summary(out: Path, shards: list[Path]) -> Path:
    rows = []
    for shard in shards:
        with np.load(shard) as f:
            columns = {k[len("summary_"):]: f[k] for k in f.files if k.startswith("summary_")}
            for n in range(len(f["index"])):
                rows.append({"index": int(f["index"][n]), "label": int(f["label"][n]),
                             "predicted": int(f["base_label_N"][n]), **{k: v[n].item() for k, v in columns.items()}})
    path = out / "summary.csv"

    def write(f):
        text = [",".join(rows[0])] + [",".join(f"{v:.6g}" if isinstance(v, float) else str(v) for v in row.values())
                                      for row in rows]
        f.write(("\n".join(text) + "\n").encode())

    write_atomically(path, write)
    return path


def main(argv=None) -> None:
    parser = cli.parser(__doc__, out=None, checkpoint="checkpoints/mnist_cnn", dataset="mnist")
    parser.add_argument("--patch", type=int, default=4)
    parser.add_argument("--stride", type=int, default=1)
    parser.add_argument("--fill", type=float, help="occluder value in input space (default 0, the dataset mean)")
    parser.add_argument("--layer", help="also record the total activation of this layer's strongest map")
    parser.add_argument("--method", default="incremental", choices=occlusion.METHODS)
    parser.add_argument("--tau", type=float, help="projective-field threshold (approximate)")
    parser.add_argument("--coarse-stride", type=int, help="adaptive drill-down from this stride (approximate)")
    parser.add_argument("--drill-fraction", type=float, default=0.25)
    parser.add_argument("--score", default="probability", choices=occlusion.SCORES)
    parser.add_argument("--shard-size", type=cli.count, default=500, help="images per output file")
    parser.add_argument("--limit", type=cli.count, help="only the first N images of the split")
    parser.add_argument("--memory-budget", type=float, default=2e9, help="bytes per call")
    args = parser.parse_args(argv)

    out = cli.output_dir(args)
    settings = {k: getattr(args, k) for k in SETTINGS}
    if args.coarse_stride:  # drill_fraction counts positions since 2026-11-23 (cells before): no mixed runs
        settings["drill_budget"] = "positions"
    recorded = check_settings(out, settings)  # recorded with the first shard: a failed start leaves no run
    model, params, _ = cli.open_network(args)
    dataset = data.open_dataset(args.dataset, args.split, data_dir=args.data_dir)
    total = dataset.num_examples if args.limit is None else min(args.limit, dataset.num_examples)
    shards = [out / f"shard_{k:05d}.npz" for k in range(-(-total // args.shard_size))]
    per_image = (len(occlusion.positions(model.input_shape[0], args.patch, args.stride))
                 * len(occlusion.positions(model.input_shape[1], args.patch, args.stride)))
    mesh = Mesh(np.array(jax.devices()), ("data",))
    todo = [k for k, shard in enumerate(shards) if not finished(shard)]
    done = sum(min(args.shard_size, total - k * args.shard_size) for k in range(len(shards)) if k not in todo)
    print(f"{model.name} on {dataset.name}/{args.split} from {dataset.where}: {total} images, {per_image} positions "
          f"each, {len(shards)} shards ({len(shards) - len(todo)} already done), {mesh.size} device(s)")

    # drill-down runs an image-dependent share of the grid: then the bar counts without a total
    grid_total = None if args.coarse_stride else total * per_image
    with tqdm(total=grid_total, initial=0 if args.coarse_stride else done * per_image, unit="pos", unit_scale=True,
              smoothing=0.1, dynamic_ncols=True) as bar:
        batches = dataset.batches(args.shard_size, skip=todo[0]) if todo else []
        for k, (images, labels) in zip(range(todo[0] if todo else 0, len(shards)), batches):
            if k not in todo:
                continue
            first = k * args.shard_size
            images, labels = images[:total - first], labels[:total - first]
            maps = occlusion.sweep(model, params, model.normalize(images), labels, args.patch, args.stride,
                                   fill=args.fill, layer=args.layer, memory_budget=args.memory_budget,
                                   method=args.method, tau=args.tau, coarse_stride=args.coarse_stride,
                                   drill_fraction=args.drill_fraction, score=args.score, mesh=mesh,
                                   progress=bar.update)
            arrays = {name: value for name, value in vars(maps).items() if isinstance(value, np.ndarray)}
            arrays |= {f"summary_{name}": value for name, value in occlusion.summary(maps).items()}
            arrays |= {"index": np.arange(first, first + len(labels)), "label": np.asarray(labels),
                       "patch": np.asarray(maps.patch)}
            if not recorded:
                write_text_atomically(out / "run.json", json.dumps(settings, indent=2) + "\n")
                recorded = True
            write_atomically(shards[k], lambda f, arrays=arrays: np.savez(f, **arrays))
    path = write_summary(out, shards)
    print(f"wrote {len(shards)} shards to {out}/ and {path}")


if __name__ == "__main__":
    cli.run(main)
