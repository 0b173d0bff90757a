"""Class models of a trained network under each preset (Simonyan et al.; Yosinski et al.).

    python scripts/class_model.py --checkpoint checkpoints/mnist_cnn --out results/saliency

Writes ``class_models.png`` (classes x presets, each image's softmax probability below
it) and ``class_models.json`` (the probabilities, steps and seconds per preset).
"""

from __future__ import annotations

import json
import time

import numpy as np

from jaxvis import cli, plots, synthesis
from jaxvis.plots import saliency as saliency_plots


def main(argv=None) -> None:
    parser = cli.parser(__doc__, out="outputs/class_models", dataset=None)
    parser.add_argument("--presets", nargs="+", default=["simonyan", *synthesis.YOSINSKI],
                        help=f"from {', '.join(synthesis.PRESETS)}")
    parser.add_argument("--steps", type=cli.count, help="replace each preset's number of steps")
    parser.add_argument("--jitter", type=int, help="replace each preset's jitter (pixels)")
    parser.add_argument("--scale-learning-rate", type=float, default=1.0,
                        help="multiply each preset's learning rate (the papers' rates suit their networks' "
                             "gradients); outputs are then named class_models_lr_x<FACTOR>")
    args = parser.parse_args(argv)
    out = cli.output_dir(args)
    overrides = {k: v for k, v in (("steps", args.steps), ("jitter", args.jitter)) if v is not None}

    model, params, _ = cli.open_network(args)
    images, probabilities, report = {}, {}, {}
    for preset in args.presets:
        start = time.time()
        s = synthesis.settings(preset, **overrides)
        s = synthesis.settings(s, learning_rate=s.learning_rate * args.scale_learning_rate)
        run, probs = synthesis.class_models(model, params, preset=s)
        images[preset], probabilities[preset] = np.asarray(run.images), np.asarray(probs)
        rounded = [round(float(p), 4) for p in probs]
        report[preset] = {"probabilities": rounded, "steps": s.steps,
                          "seconds": round(time.time() - start, 1), "stopped_at": np.asarray(run.stopped_at).tolist()}
        print(f"{preset}: probability per class {rounded} "
              f"(min {float(probs.min()):.4f}) in {report[preset]['seconds']} s")

    names = [str(k) for k in range(model.num_classes)]
    stem = "class_models" if args.scale_learning_rate == 1 else f"class_models_lr_x{args.scale_learning_rate:g}"
    paths = [out / f"{stem}.png", out / f"{stem}.json"]
    plots.save(saliency_plots.class_models_grid(model, images, probabilities, names), paths[0])
    paths[1].write_text(json.dumps({"checkpoint": args.checkpoint, "scale_learning_rate": args.scale_learning_rate,
                                    "presets": report}, indent=2) + "\n")
    cli.report(paths)


if __name__ == "__main__":
    cli.run(main)
