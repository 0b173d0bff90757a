"""Zeiler & Fergus Fig. 2 sheets for a trained network: the top-k activations of maps in
each layer over a dataset, projected with the deconvnet, beside their image patches.

    python scripts/deconvnet.py --checkpoint checkpoints/mnist_cnn --layer all \\
        --dataset mnist --split test --data-dir ../shared/data/mnist --out outputs/deconvnet
    python scripts/deconvnet.py --weights vgg16.pth --model vgg16 --layer conv5_3 \\
        --dataset imagenet2012 --split validation --limit 5000
    python scripts/deconvnet.py --weights vgg16.pth --model vgg16 --image photos/ --out outputs/deconvnet_photos

Writes one PNG sheet per layer, the first-layer filters, ``topk.npz`` (every layer's
top-k: ``<layer>.value``, ``.image``, ``.row``, ``.col``, and ``<layer>.maps``, the maps on
its sheet) and index.html showing them. With ``--image`` the top-k search runs over the
photos, and ``strongest.png`` adds the paper's single-image view: each photo's strongest
map of each layer, projected alone and cropped to the projected unit's receptive field.

The search runs in parts of ``--part-batches`` batches, each written to ``<out>/parts``
when finished: a killed run started again with the same command computes only the parts
that are missing. Over several processes (hosts), give each the same command with
``--coordinator-address``, ``--num-processes`` and its ``--process-id`` (and an ``--out``
they share): the parts are shared out, the results merged exactly (as one process would
have them), the projections shared out, and process 0 writes the sheets and the page.

    python scripts/deconvnet.py --checkpoint checkpoints/mnist_cnn --out /shared/deconvnet \\
        --coordinator-address host0:1234 --num-processes 2 --process-id 0   # on host0
    python scripts/deconvnet.py ... --process-id 1                           # on host1
"""

from __future__ import annotations

import html
import time
from pathlib import Path

import numpy as np
from tqdm import tqdm

from jaxvis import cli, data, distributed, figures, plots, report, topk
from jaxvis._io import write_atomically
from jaxvis.plots import deconvnet


class _First:
    """The first ``count`` examples of a :class:`jaxvis.data.Dataset`, read on demand."""

    def __init__(self, examples, count: int):
        self.examples, self.count = examples, count

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, i: int):
        if not 0 <= i < self.count:
            raise IndexError(i)
        return self.examples[i]

    def batches(self, batch_size: int, skip: int = 0):
        return self.examples.batches(batch_size, skip=skip)


def main(argv=None) -> None:
    parser = cli.parser(__doc__, out="outputs/deconvnet")
    parser.add_argument("--layer", nargs="+", default=["all"],
                        help="layer names, or 'all' (every ReLU and pool layer)")
    parser.add_argument("--limit", type=cli.count, help="use only the first N examples")
    parser.add_argument("--k", type=cli.count, default=9)
    parser.add_argument("--maps", type=cli.count, default=16, help="maps per sheet, a seeded random subset as in the paper")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--all-positions", action="store_true",
                        help="allow several of a map's top activations in one image (default: one per image)")
    parser.add_argument("--batch-size", type=cli.count, default=256)
    parser.add_argument("--part-batches", type=cli.count, default=20,
                        help="batches per part of the search: each finished part is kept, so a rerun resumes")
    parser.add_argument("--single", type=cli.count, default=8,
                        help="with --image: photos in strongest.png, the single-image view (the first N)")
    distributed.add_arguments(parser)
    args = parser.parse_args(argv)
    distributed.run_job(job, args, cli.output_dir(args))


def job(args, out: Path) -> None:
    """The script's work, in each process (one, or each of several)."""
    model, params, _ = cli.open_network(args)
    params = distributed.local(params)  # restored over several processes: replicated over all their devices
    if args.image:
        photos = cli.open_inputs(args, model)
        dataset = np.asarray(model.normalize(photos.pixels_NHWC))  # top_k and project_top_k take normalized floats
        source = photos.source
    else:
        dataset = data.open_dataset(args.dataset, args.split, data_dir=args.data_dir)
        source = f"{args.dataset} {args.split}"
    count = len(dataset) if args.limit is None else min(args.limit, len(dataset))
    if count < len(dataset):
        # project_top_k takes the images top_k saw, no more
        dataset = dataset[:count] if args.image else _First(dataset, count)
    layers = list(report.spatial_layers(model)) if args.layer == ["all"] \
        else args.layer
    for layer in layers:
        model.check_layer(layer, spatial=True)
    k = args.k if args.all_positions else min(args.k, count)  # one per image: no more than the images
    size = args.batch_size
    # the processes must see the same data: compare a few images spread over it
    sample = [dataset[int(i)] for i in np.linspace(0, count - 1, min(count, 8)).round()]
    sample = distributed.fingerprint([x[0] if isinstance(x, tuple) else x for x in sample])
    data_id = f"{source}, {count} images (fingerprint {sample}), batches of {size}"
    distributed.agree({"model": model.name, "input_shape": model.input_shape,
                       "params": distributed.fingerprint(params), "data": data_id, "layers": layers, "k": k,
                       "all_positions": args.all_positions, "part_batches": args.part_batches, "maps": args.maps,
                       "seed": args.seed, "single": args.single})

    def read(start: int, stop: int):
        """Batches of images ``start`` to ``stop - 1``; ``start`` is a multiple of the batch size."""
        if args.image:
            batches = (dataset[i:min(i + size, stop)] for i in range(start, stop, size))
        else:
            batches = (images[:stop - i] for i, (images, _) in
                       zip(range(start, stop, size), dataset.batches(size, skip=start // size)))
        return tqdm(batches, total=-(-(stop - start) // size), desc=f"top-k, images {start}-{stop - 1}",
                    unit="batch", leave=False)

    start = time.time()
    tops = topk.top_k_parts(model, params, read, count, layers, k=k, one_per_image=not args.all_positions,
                            part_size=args.part_batches * size, folder=out / "parts", tag=data_id)
    rng = np.random.default_rng(args.seed)
    chosen = {layer: np.sort(rng.choice(tops[layer].value.shape[0], min(args.maps, tops[layer].value.shape[0]),
                                        replace=False)) for layer in layers}
    sheets = {}
    for layer in tqdm(layers, desc="projections", unit="layer", disable=not distributed.is_main()):
        sheets[layer] = topk.project_top_k_spread(model, params, dataset, tops[layer], layer, maps=chosen[layer])
    if not distributed.is_main():  # process 0 writes what every process computed
        return
    arrays = {f"{layer}.{field}": np.asarray(getattr(top, field)) for layer, top in tops.items()
              for field in ("value", "image", "row", "col")}
    arrays |= {f"{layer}.maps": maps for layer, maps in chosen.items()}
    write_atomically(out / "topk.npz", lambda f: np.savez(f, **arrays))
    sections = []
    first_conv = next(layer for layer in model.layers if layer.convolution)
    path = out / "filters.png"
    plots.save(deconvnet.filters(params[first_conv.name]["kernel"]), path)
    sections.append((f"{first_conv.name} filters", path))
    if args.image:
        path = out / "strongest.png"
        shown = dataset[:min(count, args.single)]
        plots.save(figures.strongest_figure(model, params, shown, layers, photos.names[:len(shown)],
                                            "Strongest map of each layer, projected alone (deconvnet), cropped to "
                                            "the projected unit's receptive field"), path)
        sections.append(("each photo's strongest map per layer", path))
    for layer in layers:
        path = out / f"{layer}.png"
        plots.save(deconvnet.layer_sheet(model, sheets[layer], layer), path)
        sections.append((f"{layer}: maps {', '.join(map(str, chosen[layer]))}", path))
    index = out / "index.html"
    body = "\n".join(f"<h2>{html.escape(title)}</h2><img src='{p.name}'>" for title, p in sections)
    index.write_text(f"<!doctype html><title>{html.escape(model.name)} deconvnet</title>"
                     f"<h1>{html.escape(model.name)}: top-{k} activations, {count} images of "
                     f"{html.escape(source)}</h1>\n{body}\n")
    for _, p in [*sections, ("", out / "topk.npz")]:
        print(f"wrote {p}")
    print(f"wrote {index} ({time.time() - start:.0f} s)")


if __name__ == "__main__":
    cli.run(main)
