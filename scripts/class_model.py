"""Class models of a trained network under each preset (Simonyan et al.; Yosinski et al.).

    python scripts/class_model.py --checkpoint checkpoints/mnist_cnn --out results/saliency
    python scripts/class_model.py --weights vgg16.pth --model vgg16 --classes flamingo 130 goldfish

Writes ``class_models.png`` (presets x classes, each image titled with its class's name
and its softmax probability below it; more than 100 classes go to one file per 100,
``class_models_0000-0099.png``, ...) and ``class_models.json`` (the classes, and the
probabilities, steps and seconds per preset). The classes are optimized in chunks that
fit ``--memory-budget``.
"""

from __future__ import annotations

import json
import time

import numpy as np

from jaxvis import cli, plots, synthesis
from jaxvis.plots import saliency as saliency_plots


PAGE = 100  # classes per figure: more are split over several files


def main(argv=None) -> None:
    parser = cli.parser(__doc__, out="outputs/class_models", dataset=None)
    parser.add_argument("--classes", nargs="+", metavar="CLASS",
                        help="class names (e.g. flamingo) or indices (default: every class)")
    parser.add_argument("--presets", nargs="+", default=["simonyan", *synthesis.YOSINSKI],
                        help=f"from {', '.join(synthesis.PRESETS)}")
    parser.add_argument("--steps", type=cli.count, help="replace each preset's number of steps")
    parser.add_argument("--jitter", type=int, help="replace each preset's jitter (pixels)")
    parser.add_argument("--scale-learning-rate", type=float, default=1.0,
                        help="multiply each preset's learning rate (the papers' rates suit their networks' "
                             "gradients); outputs are then named class_models_lr_x<FACTOR>")
    parser.add_argument("--init-std", type=float, default=0.0,
                        help="start from Gaussian noise of this standard deviation (paper units) instead of the "
                             "mean image, where a network's first ReLUs may all be off")
    parser.add_argument("--memory-budget", type=float, default=2e9,
                        help="bytes per call: the classes are optimized in chunks that fit")
    args = parser.parse_args(argv)
    out = cli.output_dir(args)
    overrides = {k: v for k, v in (("steps", args.steps), ("jitter", args.jitter)) if v is not None}

    model, params, card = cli.open_network(args)
    names = cli.class_names(args, model, card)
    classes = np.arange(model.num_classes) if not args.classes else np.asarray(
        list(dict.fromkeys(names.index(c) for c in args.classes)))
    images, probabilities, report = {}, {}, {}
    for preset in args.presets:
        start = time.time()
        s = synthesis.settings(preset, **overrides)
        s = synthesis.settings(s, learning_rate=s.learning_rate * args.scale_learning_rate)
        run, probs = synthesis.class_models(model, params, classes, preset=s, init_std=args.init_std,
                                              memory_budget=args.memory_budget)
        images[preset], probabilities[preset] = np.asarray(run.images), np.asarray(probs)
        rounded = [round(float(p), 4) for p in probs]
        report[preset] = {"probabilities": rounded, "steps": s.steps,
                          "seconds": round(time.time() - start, 1), "stopped_at": np.asarray(run.stopped_at).tolist()}
        print(f"{preset}: probability per class (min {float(probs.min()):.4f}, mean {float(probs.mean()):.4f}) "
              f"in {report[preset]['seconds']} s")

    stem = "class_models" if args.scale_learning_rate == 1 else f"class_models_lr_x{args.scale_learning_rate:g}"
    pages = range(0, len(classes), PAGE)
    paths = [out / (f"{stem}.png" if len(pages) == 1 else f"{stem}_{p:04d}-{min(p + PAGE, len(classes)) - 1:04d}.png")
             for p in pages]
    for p, path in zip(pages, paths):
        part = slice(p, p + PAGE)
        plots.save(saliency_plots.class_models_grid(model, {k: v[part] for k, v in images.items()},
                                                    {k: v[part] for k, v in probabilities.items()},
                                                    [names.name(c) for c in classes[part]]), path)
    paths.append(out / f"{stem}.json")
    paths[-1].write_text(json.dumps({"checkpoint": args.checkpoint, "weights": args.weights,
                                     "scale_learning_rate": args.scale_learning_rate,
                                     "classes": [{"index": int(c), "name": names.name(c)} for c in classes],
                                     "presets": report}, indent=2) + "\n")
    cli.report(paths)


if __name__ == "__main__":
    cli.run(main)
