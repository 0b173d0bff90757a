"""Zeiler & Fergus Table 1: does the network mask the same part of different images in the
same way? Delta per layer for digits with one stroke part blacked out, against random masks.

    python scripts/correspondence.py --checkpoint checkpoints/mnist_cnn --dataset mnist \\
        --data-dir ../shared/data/mnist --out results/correspondence

A part is ``DIGIT:NAME:ROW0:ROW1[:COL0:COL1]``: on digits of class DIGIT, a box of
``--box`` pixels centred on the centroid of the ink (pixels above 0.5) in rows ROW0..ROW1
(and columns COL0..COL1) of the ink's bounding box, as fractions of its height (width);
see jaxvis.analysis.correspondence.part_boxes. Each repeat draws ``--images`` digits of
the class from the first ``--pool`` of the split and measures Delta for each part and for
two controls on the same digits: boxes of the same size centred on a random ink pixel
("random on ink", the paper's random regions of the object) and boxes anywhere ("random
anywhere", which on a digit's black background often mask nothing). Masks are black.
Writes ``table.md``, ``table.json`` (every repeat's Delta) and ``parts_<digit>.png`` (the
masks of the first repeat). There is no ``--image``: parts are found from a digit's class
and its ink, and photos come with neither (the paper masked eyes and noses by hand).
"""

from __future__ import annotations

import json
import time

import numpy as np

from jaxvis import cli, plots
from jaxvis.analysis import correspondence
from jaxvis.plots import analysis as analysis_plots

PARTS = ("7:top bar:0:0.25", "7:stem:0.5:1", "6:loop:0.5:1", "6:upper stroke:0:0.4")
CONTROLS = ("random on ink", "random anywhere")


def parse_part(text: str) -> tuple[int, str, tuple[float, float], tuple[float, float]]:
    """``DIGIT:NAME:ROW0:ROW1[:COL0:COL1]`` as ``(digit, name, rows, cols)``."""
    fields = text.split(":")
    try:
        if len(fields) not in (4, 6):
            raise ValueError
        band = [float(v) for v in fields[2:]]
        return int(fields[0]), fields[1], tuple(band[:2]), tuple(band[2:]) or (0.0, 1.0)
    except ValueError:
        raise ValueError(f"a part is DIGIT:NAME:ROW0:ROW1[:COL0:COL1], got {text!r}") from None


def main(argv=None) -> None:
    parser = cli.parser(__doc__, out="outputs/correspondence", checkpoint="checkpoints/mnist_cnn", photos=False)
    parser.add_argument("--parts", nargs="+", default=list(PARTS), help="DIGIT:NAME:ROW0:ROW1[:COL0:COL1] each")
    parser.add_argument("--box", type=int, nargs=2, default=(8, 8), metavar=("HEIGHT", "WIDTH"))
    parser.add_argument("--images", type=int, default=5, help="digits per repeat (the paper: 5 dogs)")
    parser.add_argument("--repeats", type=cli.count, default=20)
    parser.add_argument("--pool", type=cli.count, default=100, help="draw from the first POOL digits of each class")
    parser.add_argument("--layers", nargs="+", help="default: every max-pool layer and the last ReLU")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    out = cli.output_dir(args)
    start = time.time()
    if args.images < 2:
        raise ValueError(f"--images must be at least 2 (Delta compares pairs), got {args.images}")

    model, params, card = cli.open_network(args)
    images, labels = cli.open_examples(args)
    parts = [parse_part(p) for p in args.parts]
    layers = args.layers or [layer.name for layer in model.layers if layer.pooling] + \
        [[layer.name for layer in model.layers if layer.rectifier][-1]]
    black = np.asarray(model.normalize(np.zeros((1, 1, 1, model.input_shape[-1]), np.float32)))[0, 0, 0]
    rng = np.random.default_rng(args.seed)
    box_hw = tuple(args.box)

    rows, shown = {}, {}
    for digit in dict.fromkeys(d for d, *_ in parts):
        pool = np.flatnonzero(labels == digit)[:args.pool]
        if len(pool) < args.images:
            raise ValueError(f"class {digit} has {len(pool)} digits in {args.dataset}/{args.split}; "
                             f"--images is {args.images}")
        pixels = images[pool].astype(np.float32) / 255.0
        mine = [(name, r, c) for d, name, r, c in parts if d == digit]
        part_boxes = {name: correspondence.part_boxes(pixels, box_hw, r, c) for name, r, c in mine}
        names = [f"{digit}: {name}" for name, *_ in mine] + [f"{digit}: {c}" for c in CONTROLS]
        deltas = {n: {layer: [] for layer in layers} for n in names}
        for repeat in range(args.repeats):
            subset = np.sort(rng.choice(len(pool), args.images, replace=False))
            x = model.normalize(pixels[subset])
            boxes = {f"{digit}: {name}": part_boxes[name][subset] for name, *_ in mine}
            boxes[f"{digit}: {CONTROLS[0]}"] = correspondence.ink_boxes(pixels[subset], box_hw, 1, seed=rng)[0]
            boxes[f"{digit}: {CONTROLS[1]}"] = correspondence.random_boxes(model.input_shape[:2], box_hw, args.images,
                                                                           1, seed=rng)[0]
            for n, b in boxes.items():
                result = correspondence.consistency(model, params, x, b, layers, fill=black)
                for layer in layers:
                    deltas[n][layer].append(result.mean[layer])
            if repeat == 0:
                shown[digit] = (pixels[subset], {n.split(": ", 1)[1]: b for n, b in boxes.items()},
                                [f"{digit} (#{i})" for i in pool[subset]])
        for n in names:
            rows[n] = {layer: {"mean": float(np.mean(v)), "std": float(np.std(v)),
                               "per_repeat": np.round(v, 5).tolist()} for layer, v in deltas[n].items()}
        for name, *_ in mine:  # paired: how often the part beats the control on the same digits
            for layer in layers:
                part, ink = (np.asarray(deltas[f"{digit}: {n}"][layer]) for n in (name, CONTROLS[0]))
                rows[f"{digit}: {name}"][layer]["below_random_on_ink"] = float(np.mean(part < ink))

    paths = [out / "table.md", out / "table.json"] + [out / f"parts_{d}.png" for d in shown]
    lines = [f"Correspondence (Zeiler & Fergus Table 1) of {model.name} ({cli.source(args)}) on {args.dataset}/"
             f"{args.split}: Delta (normalized Hamming distance between the sign patterns of feature changes, "
             f"lower = more consistent), mean ± std over {args.repeats} repeats of {args.images} digits drawn from "
             f"the first {args.pool} of the class; {box_hw[0]}x{box_hw[1]} black masks. In brackets: the fraction "
             "of repeats in which the part's Delta is below the random-on-ink control's on the same digits.", "",
             "| mask | " + " | ".join(layers) + " |", "|---|" + "---|" * len(layers)]
    for n, cells in rows.items():
        lines.append(f"| {n} | " + " | ".join(
            f"{c['mean']:.3f} ± {c['std']:.3f}" + (f" ({c['below_random_on_ink']:.0%})" if "below_random_on_ink" in c
                                                   else "") for c in cells.values()) + " |")
    paths[0].write_text("\n".join(lines) + "\n")
    paths[1].write_text(json.dumps({
        "checkpoint": args.checkpoint, "weights": args.weights, "model": model.name, "card_test_accuracy": card.get("test_accuracy"),
        "dataset": args.dataset, "split": args.split, "parts": args.parts, "box": box_hw, "images": args.images,
        "repeats": args.repeats, "pool": args.pool, "seed": args.seed, "layers": layers, "fill": "black",
        "rows": rows}, indent=1) + "\n")
    for digit, (pixels, boxes, names) in shown.items():
        plots.save(analysis_plots.parts_figure(pixels, boxes, names), out / f"parts_{digit}.png")
    print("\n".join(lines))
    cli.report(paths)
    print(f"done in {time.time() - start:.0f} s")


if __name__ == "__main__":
    cli.run(main)
