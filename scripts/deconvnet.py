"""Zeiler & Fergus Fig. 2 sheets for a trained network: the top-k activations of maps in
each layer over a dataset, projected with the deconvnet, beside their image patches.

    python scripts/deconvnet.py --checkpoint checkpoints/mnist_cnn --layer all \\
        --dataset mnist --split test --data-dir ../shared/data/mnist --out outputs/deconvnet
    python scripts/deconvnet.py --weights vgg16.pth --model vgg16 --layer conv5_3 \\
        --dataset imagenet2012 --split validation --limit 5000
    python scripts/deconvnet.py --weights vgg16.pth --model vgg16 --image photos/ --out outputs/deconvnet_photos

Writes one PNG sheet per layer, the first-layer filters, and index.html showing them.
With ``--image`` the top-k search runs over the photos, and ``strongest.png`` adds the
paper's single-image view: each photo's strongest map of each layer, projected alone and
cropped to the projected unit's receptive field.
"""

from __future__ import annotations

import html
import time

import numpy as np
from tqdm import tqdm

from jaxvis import cli, data, figures, plots, topk
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

    def batches(self, batch_size: int):
        return self.examples.batches(batch_size)


def main(argv=None) -> None:
    parser = cli.parser(__doc__, out="outputs/deconvnet")
    parser.add_argument("--layer", default="all", help="a layer name, or 'all' (every ReLU and pool layer)")
    parser.add_argument("--limit", type=cli.count, help="use only the first N examples")
    parser.add_argument("--k", type=cli.count, default=9)
    parser.add_argument("--maps", type=cli.count, default=16, help="maps per sheet, a seeded random subset as in the paper")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--all-positions", action="store_true",
                        help="allow several of a map's top activations in one image (default: one per image)")
    parser.add_argument("--batch-size", type=cli.count, default=256)
    parser.add_argument("--single", type=cli.count, default=8,
                        help="with --image: photos in strongest.png, the single-image view (the first N)")
    args = parser.parse_args(argv)

    model, params, _ = cli.open_network(args)
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
    layers = [n for n in model.fields if model.layer(n).kind in ("relu", "max_pool")] if args.layer == "all" \
        else [args.layer]
    for layer in layers:
        model.check_layer(layer, spatial=True)
    out = cli.output_dir(args)

    start = time.time()
    batches = (dataset[i:min(i + args.batch_size, count)] for i in range(0, count, args.batch_size)) if args.image \
        else (images[:count - i * args.batch_size] for i, (images, _) in
              zip(range(-(-count // args.batch_size)), dataset.batches(args.batch_size)))
    batches = tqdm(batches, total=-(-count // args.batch_size), desc="top-k", unit="batch")
    k = args.k if args.all_positions else min(args.k, count)  # one per image: no more than the images
    tops = topk.top_k(model, params, batches, layers, k=k, one_per_image=not args.all_positions)
    rng = np.random.default_rng(args.seed)
    sections = []
    first_conv = next(layer for layer in model.layers if layer.kind == "conv")
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
    for layer in tqdm(layers, desc="projections", unit="layer"):
        top = tops[layer]
        maps = np.sort(rng.choice(top.value.shape[0], min(args.maps, top.value.shape[0]), replace=False))
        patches = topk.project_top_k(model, params, dataset, top, layer, maps=maps)
        path = out / f"{layer}.png"
        plots.save(deconvnet.layer_sheet(model, patches, layer), path)
        sections.append((f"{layer}: maps {', '.join(map(str, maps))}", path))
    index = out / "index.html"
    body = "\n".join(f"<h2>{html.escape(title)}</h2><img src='{p.name}'>" for title, p in sections)
    index.write_text(f"<!doctype html><title>{html.escape(model.name)} deconvnet</title>"
                     f"<h1>{html.escape(model.name)}: top-{k} activations, {count} images of "
                     f"{html.escape(source)}</h1>\n{body}\n")
    for _, p in sections:
        print(f"wrote {p}")
    print(f"wrote {index} ({time.time() - start:.0f} s)")


if __name__ == "__main__":
    cli.run(main)
