"""Zeiler & Fergus Fig. 5: how features and the output change as images are translated,
scaled and rotated.

    python scripts/invariance.py --checkpoint checkpoints/mnist_cnn --dataset mnist \\
        --data-dir ../shared/data/mnist --out results/invariance

For each image (default: the first of each class) and each amount of vertical and
horizontal translation, scaling and rotation: the distance between the features of the
transformed and the original image at each ``--layers`` layer (default: the first and
the last ReLU), divided by the original's norm, and the probability of the true label.
What comes into view from outside the image is black. With ``--image`` the photos (the
first ``--num-images``, or ``--indices``) have no true label: the probability is of the
predicted class, or of the one ``--class`` names. Writes ``invariance.png`` and
``invariance.json`` (every number of the figure, and a summary over images).
"""

from __future__ import annotations

import dataclasses
import json
import time

import jax
import numpy as np

from jaxvis import cli, plots
from jaxvis.analysis import invariance
from jaxvis.plots import analysis as analysis_plots

STRIP_POINTS = 5


def amount_range(text: str) -> np.ndarray:
    """``START:STOP:STEP`` (both ends included) as amounts."""
    try:
        start, stop, step = (float(v) for v in text.split(":"))
    except ValueError:
        raise ValueError(f"a range is START:STOP:STEP, got {text!r}") from None
    if step <= 0 or stop < start:
        raise ValueError(f"a range START:STOP:STEP needs STEP > 0 and STOP >= START, got {text!r}")
    return np.round(np.arange(start, stop + step / 2, step), 6)


def main(argv=None) -> None:
    parser = cli.parser(__doc__, out="outputs/invariance", checkpoint="checkpoints/mnist_cnn")
    cli.add_class(parser)
    parser.add_argument("--indices", type=int, nargs="+",
                        help="images to use (default: the first of each class; photos: the first --num-images)")
    parser.add_argument("--num-images", type=cli.count, default=8, help="without --indices: classes 0, 1, ...")
    parser.add_argument("--layers", nargs="+", help="layers to compare (default: the first and the last ReLU)")
    parser.add_argument("--translate", default="-10:10:1", help="shifts in pixels, START:STOP:STEP")
    parser.add_argument("--scale", default="0.4:2:0.05", help="zoom factors, START:STOP:STEP")
    parser.add_argument("--rotate", default="-180:180:5", help="angles in degrees, START:STOP:STEP")
    args = parser.parse_args(argv)
    out = cli.output_dir(args)
    start = time.time()

    model, params, card = cli.open_network(args)
    names = cli.class_names(args, model, card)
    inputs = cli.open_inputs(args, model)
    count = len(inputs.indices_N)
    if args.indices:
        chosen = np.asarray(args.indices)
        if chosen.min() < 0 or chosen.max() >= count:
            raise ValueError(f"--indices must lie in [0, {count}), got {sorted(set(chosen.tolist()))}")
    elif inputs.labels_N is not None:
        chosen = cli.first_per_class(inputs.labels_N, 1, model.num_classes)[:args.num_images]
    else:
        chosen = np.arange(min(args.num_images, count))
    pixels, labels = inputs.pixels_NHWC[chosen], None if inputs.labels_N is None else inputs.labels_N[chosen]
    probs = cli.predict(model, params, model.normalize(pixels))
    y, target = cli.targets(args, names, labels, probs)
    relus = [layer.name for layer in model.layers if layer.rectifier]
    layers = args.layers or [relus[0], relus[-1]]
    amounts = {"translate_v": amount_range(args.translate), "translate_h": amount_range(args.translate),
               "scale": amount_range(args.scale), "rotate": amount_range(args.rotate)}
    results = {f: invariance.measure(model, params, pixels, y, f, a, layers) for f, a in amounts.items()}

    strips = {}
    for family, a in amounts.items():
        shown = a[np.linspace(0, len(a) - 1, STRIP_POINTS).round().astype(int)]
        strips[family] = (shown, np.asarray(jax.vmap(lambda t: invariance.transform(pixels[0], family, t))(shown)))
    title = f"{model.name} ({cli.source(args)}): {len(y)} images of {inputs.source}"
    curve_labels = [f"{plots.shorten(names.name(c))} ({inputs.names[i]})" for c, i in zip(y, chosen)]
    figure = analysis_plots.invariance_figure(results, layers, curve_labels, strips,
                                              title=f"{title}; legend: {target} (image)", target=target)
    paths = [out / "invariance.png", out / "invariance.json"]
    plots.save(figure, paths[0])
    hit = "correct" if target == "true class" else "predicts_the_class"

    def per_family(r: invariance.Invariance) -> dict:
        mean = lambda v: np.round(v.mean(axis=0), 5).tolist()
        return {"amounts": r.amounts.tolist(),
                "mean_over_images": {**{f"relative_{l}": mean(r.relative[l]) for l in layers},
                                     "true_prob": mean(r.true_prob), hit: mean(r.predicted == y[:, None])},
                "per_image": {**{f"distance_{l}": np.round(r.distance[l], 5).tolist() for l in layers},
                              **{f"relative_{l}": np.round(r.relative[l], 5).tolist() for l in layers},
                              "true_prob": np.round(r.true_prob, 5).tolist(), "predicted": r.predicted.tolist()}}

    report = {"checkpoint": args.checkpoint, "weights": args.weights, "model": model.name,
              "card_test_accuracy": card.get("test_accuracy"), "class": target}
    if args.image:  # no true labels: "true_prob" is the probability of the class explained
        photos = dataclasses.replace(inputs, names=tuple(inputs.names[i] for i in chosen))
        report |= {"indices": chosen.tolist(), "photos": cli.photo_records(photos, names, probs, y)}
    else:
        report |= {"dataset": args.dataset, "split": args.split, "indices": chosen.tolist(), "labels": y.tolist()}
    report |= {"layers": layers, "fill": 0.0, "families": {f: per_family(r) for f, r in results.items()}}
    paths[1].write_text(json.dumps(report, indent=1) + "\n")
    cli.report(paths)
    print(f"done in {time.time() - start:.0f} s")


if __name__ == "__main__":
    cli.run(main)
