"""Occlusion maps of a whole split (Zeiler & Fergus Fig. 7), sharded over the local devices, resumable.

    python scripts/occlusion.py --checkpoint checkpoints/mnist_cnn --dataset mnist --split test \\
        --data-dir ../shared/data/mnist --out outputs/occlusion_mnist --patch 4 --stride 1
    python scripts/occlusion.py --weights vgg16.pth --model vgg16 --image photos/ --out outputs/occlusion_photos

Writes ``<out>/shard_00000.npz``, ... (``--shard-size`` images each: every map of
:class:`jaxvis.occlusion.OcclusionMaps` and the per-image summary), ``<out>/summary.csv``
(one row per image: true-class probability unoccluded and at the worst position, the
drop, the worst occluder's centre, the attribution peak, the fraction of positions that
change the prediction) and ``<out>/run.json`` (the settings). Each shard is written to a
temporary file and renamed, so a killed run started again with the same command skips
the finished shards and recomputes nothing. Each call's occluder positions are spread
over all local devices (a ``data`` mesh axis). ``<out>/fig7.png`` shows the Fig. 7 panels
of the first ``--figure`` images.

With ``--image`` (photos: no true labels) the maps measure the predicted class, or the
one ``--class`` names, and ``summary.csv`` names the photo, the class and the prediction.

Over several processes (hosts), give each the same command with ``--coordinator-address``,
``--num-processes`` and its ``--process-id``, and an ``--out`` they share: the shards still
to do are shared out (contiguous blocks, each process over its own devices), and once all
are written process 0 writes ``summary.csv`` and ``fig7.png``, the same as one process
would. Killed, the same command (with any number of processes) computes only the missing
shards.
"""

import csv
import dataclasses
import io
import json
from pathlib import Path

import jax
import numpy as np
from jax.sharding import Mesh
from tqdm import tqdm

from jaxvis import cli, data, distributed, figures, occlusion, plots
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


def write_summary(out: Path, shards: list[Path], names, labelled: bool) -> Path:
    """``summary.csv``: one row per image (photos: with the file's name). With true labels
    the class column is ``label`` (what ``occlusion_summary.py`` reads); otherwise (photos,
    ``--class``) it is ``class``, with the class's and the predicted class's names."""
    rows = []
    for shard in shards:
        with np.load(shard) as f:
            columns = {k[len("summary_"):]: f[k] for k in f.files if k.startswith("summary_")}
            for n in range(len(f["index"])):
                c, p = int(f["label"][n]), int(f["base_label_N"][n])
                head = {"index": int(f["index"][n])} | ({"image": str(f["image"][n])} if "image" in f.files else {})
                head |= {"label": c, "predicted": p} if labelled else {
                    "class": c, "class_name": names.name(c), "predicted": p, "predicted_name": names.name(p)}
                rows.append(head | {k: v[n].item() for k, v in columns.items()})
    path = out / "summary.csv"

    def write(f):
        text = io.StringIO()
        writer = csv.writer(text, lineterminator="\n")
        writer.writerow(rows[0])
        writer.writerows([f"{v:.6g}" if isinstance(v, float) else v for v in row.values()] for row in rows)
        f.write(text.getvalue().encode())

    write_atomically(path, write)
    return path


def read_maps(shard: Path, count: int, score: str) -> tuple[occlusion.OcclusionMaps, np.ndarray]:
    """The first ``count`` images' maps of a shard, and the classes they measured."""
    with np.load(shard) as f:
        fields = {}
        for field in dataclasses.fields(occlusion.OcclusionMaps):
            name = field.name
            if name in ("patch", "score"):
                continue
            value = f[name] if name in f.files else None
            fields[name] = value[:count] if value is not None and "_N" in name else value
        return occlusion.OcclusionMaps(patch=tuple(int(v) for v in f["patch"]), score=score, **fields), \
            f["label"][:count]


def _runs(ks: list[int]) -> list[tuple[int, int]]:
    """The runs of consecutive numbers in ascending ``ks``, as ``(first, last + 1)``."""
    runs = []
    for k in ks:
        if runs and runs[-1][1] == k:
            runs[-1] = (runs[-1][0], k + 1)
        else:
            runs.append((k, k + 1))
    return runs


def _spans(ks: list[int]) -> str:
    return ", ".join(f"{lo}" if hi == lo + 1 else f"{lo}-{hi - 1}" for lo, hi in _runs(ks)) or "none"


def main(argv=None) -> None:
    parser = cli.parser(__doc__, out=None, checkpoint="checkpoints/mnist_cnn", dataset="mnist")
    parser.add_argument("--patch", type=cli.count, help="occluder side (default: a seventh of the image: 4 on 28x28, "
                                                        "32 on 224x224)")
    parser.add_argument("--stride", type=cli.count, help="default: a quarter of the patch (1 on 28x28, 8 on 224x224)")
    parser.add_argument("--fill", type=float, help="occluder value in input space (default 0, the dataset mean)")
    parser.add_argument("--layer", default="auto", help="record the total activation of this layer's strongest map "
                                                        "(panel b): default the deepest spatial ReLU; 'none' for none")
    cli.add_class(parser)
    parser.add_argument("--method", default="incremental", choices=occlusion.METHODS)
    parser.add_argument("--tau", type=float, help="projective-field threshold (approximate)")
    parser.add_argument("--coarse-stride", type=int, help="adaptive drill-down from this stride (approximate)")
    parser.add_argument("--drill-fraction", type=float, default=0.25)
    parser.add_argument("--score", default="probability", choices=occlusion.SCORES)
    parser.add_argument("--shard-size", type=cli.count, default=500, help="images per output file")
    parser.add_argument("--limit", type=cli.count, help="only the first N images of the split")
    parser.add_argument("--figure", type=int, default=4, help="images in fig7.png (the first N; 0: no figure)")
    parser.add_argument("--memory-budget", type=float, default=2e9, help="bytes per call")
    distributed.add_arguments(parser)
    args = parser.parse_args(argv)
    distributed.run_job(job, args, cli.output_dir(args))


def job(args, out: Path) -> None:
    """The script's work, in each process (one, or each of several)."""
    model, params, _ = cli.open_network(args)
    params = distributed.local(params)  # restored over several processes: replicated over all their devices
    names = cli.class_names(args, model)
    hw = model.input_shape[:2]
    args.patch, args.stride = cli.occluder(hw, args.patch, args.stride, 4)
    args.layer = {"auto": figures.last_spatial_relu(model), "none": None}.get(args.layer, args.layer)
    settings = {k: getattr(args, k) for k in SETTINGS if not (args.image and k in ("dataset", "split"))}
    settings |= {k: getattr(args, k) for k in ("weights", "model", "preset", "input_size", "image", "target")
                 if getattr(args, k, None) is not None}
    if args.coarse_stride:  # drill_fraction counts positions since 2026-11-23 (cells before): no mixed runs
        settings["drill_budget"] = "positions"
    recorded = check_settings(out, settings)  # recorded with the first shard: a failed start leaves no run

    if args.image:
        photos = cli.open_inputs(args, model)
        total = len(photos.names) if args.limit is None else min(args.limit, len(photos.names))
        x_all = np.asarray(model.normalize(photos.pixels_NHWC))

        def batches(size, skip):
            return ((x_all[i:i + size], None) for i in range(skip * size, total, size))
        where = photos.source
    else:
        dataset = data.open_dataset(args.dataset, args.split, data_dir=args.data_dir)
        total = dataset.num_examples if args.limit is None else min(args.limit, dataset.num_examples)

        def batches(size, skip):
            return ((model.normalize(images), labels) for images, labels in dataset.batches(size, skip=skip))
        where = f"{dataset.name}/{args.split} from {dataset.where}"
    shards = [out / f"shard_{k:05d}.npz" for k in range(-(-total // args.shard_size))]
    per_image = (len(occlusion.positions(hw[0], args.patch, args.stride))
                 * len(occlusion.positions(hw[1], args.patch, args.stride)))
    # the processes must see the same data and network: compare a few images spread over the split
    sample = distributed.fingerprint([x for x, _ in (next(batches(1, int(i))) for i in
                                                     np.linspace(0, total - 1, min(total, 8)).round())])
    distributed.agree(settings | {"params": distributed.fingerprint(params), "data": f"{where}: {total} images "
                                  f"(fingerprint {sample})", "memory_budget": args.memory_budget})
    mesh = Mesh(np.array(jax.local_devices()), ("data",))  # each process sweeps its shards on its own devices
    todo = [k for k, shard in enumerate(shards) if not finished(shard)]
    todo = distributed.gather_json(todo, "shards to do")[0]  # process 0's view, should another write meanwhile
    mine = [todo[i] for i in distributed.share(len(todo))]
    processes = f", {jax.process_count()} processes" if jax.process_count() > 1 else ""
    print(f"{model.name} on {where}: {total} images, {per_image} positions of a {args.patch}x{args.patch} occluder "
          f"each, {len(shards)} shards ({len(shards) - len(todo)} already done{processes}), {mesh.size} device(s)"
          + (f" in process {jax.process_index()}, which takes shards {_spans(mine)}" if processes else ""))

    def runs(ks):
        """Each run of consecutive shards read in one pass: ``(k, (images, labels))``."""
        for lo, hi in _runs(ks):
            yield from zip(range(lo, hi), batches(args.shard_size, lo))

    # drill-down runs an image-dependent share of the grid: then the bar counts without a total
    grid_total = None if args.coarse_stride else per_image * sum(min(args.shard_size, total - k * args.shard_size)
                                                                 for k in mine)
    with tqdm(total=grid_total, unit="pos", unit_scale=True, smoothing=0.1, dynamic_ncols=True) as bar:
        for k, (x, labels) in runs(mine):
            first = k * args.shard_size
            x = x[:total - first]
            labels, _ = cli.targets(args, names, None if labels is None else labels[:total - first],
                                    cli.predict(model, params, x))
            maps = occlusion.sweep(model, params, x, labels, args.patch, args.stride,
                                   fill=args.fill, layer=args.layer, memory_budget=args.memory_budget,
                                   method=args.method, tau=args.tau, coarse_stride=args.coarse_stride,
                                   drill_fraction=args.drill_fraction, score=args.score, mesh=mesh,
                                   progress=bar.update)
            arrays = {name: value for name, value in vars(maps).items() if isinstance(value, np.ndarray)}
            arrays |= {f"summary_{name}": value for name, value in occlusion.summary(maps).items()}
            arrays |= {"index": np.arange(first, first + len(labels)), "label": np.asarray(labels),
                       "patch": np.asarray(maps.patch)}
            if args.image:
                arrays["image"] = np.asarray(photos.names[first:first + len(labels)])
            if not recorded:
                write_text_atomically(out / "run.json", json.dumps(settings, indent=2) + "\n")
                recorded = True
            write_atomically(shards[k], lambda f, arrays=arrays: np.savez(f, **arrays))
    distributed.barrier("every shard written")
    if not distributed.is_main():  # process 0 writes the summary of every process's shards
        return
    labelled = not args.image and args.target is None
    paths = [write_summary(out, shards, names, labelled)]
    if args.figure > 0:
        count = min(args.figure, args.shard_size, total)
        maps, labels = read_maps(shards[0], count, args.score)
        x, true = next(batches(count, 0))
        _, target = cli.targets(args, names, None if true is None else true[:count], cli.predict(model, params, x))
        paths.append(out / "fig7.png")
        fill = 0.0 if args.fill is None else args.fill
        plots.save(figures.occlusion_fig7(model, params, x, labels, maps, args.layer, names.names, fill, target),
                   paths[-1])
    print(f"wrote {len(shards)} shards to {out}/")
    cli.report(paths)


if __name__ == "__main__":
    cli.run(main)
