"""Reconstruct images from each layer's code of a trained network (Mahendran & Vedaldi).

    python scripts/invert.py --checkpoint checkpoints/mnist_cnn --out results/saliency
    python scripts/invert.py --weights vgg16.pth --model vgg16 --image photos/ --layers pool5 fc8

Writes ``inversion.png`` (the originals, then one row of reconstructions per layer) and
``inversion.json`` (the relative feature error ``||Phi(x) - Phi_0|| / ||Phi_0||`` each
reconstruction reached, per layer).
"""

from __future__ import annotations

import json
import time

import jax
import numpy as np

from jaxvis import cli, plots, report, synthesis
from jaxvis.plots import saliency as saliency_plots


def main(argv=None) -> None:
    parser = cli.parser(__doc__, out="outputs/inversion")
    parser.add_argument("--layers", nargs="+", help="default: every relu and pool layer, and the logits")
    parser.add_argument("--num-images", type=cli.count, default=6,
                        help="the first image of classes 0, 1, ... (photos: the first N)")
    parser.add_argument("--steps", type=cli.count, help="replace the preset's number of steps")
    parser.add_argument("--seed", type=int, default=0, help="the random starting images")
    args = parser.parse_args(argv)
    out = cli.output_dir(args)
    overrides = {} if args.steps is None else {"steps": args.steps}

    model, params, _ = cli.open_network(args)
    layers = args.layers or [*report.spatial_layers(model), model.names[-1]]
    inputs = cli.open_inputs(args, model, lambda labels: cli.first_per_class(labels, 1, args.num_images))
    x = model.normalize(inputs.pixels_NHWC[:args.num_images])

    reconstructions, errors = {}, {}
    for layer in layers:
        start = time.time()
        run, error = synthesis.invert(model, params, x, layer, key=jax.random.key(args.seed), **overrides)
        reconstructions[layer], errors[layer] = np.asarray(run.images), np.asarray(error)
        print(f"{layer}: relative feature error {[round(float(e), 3) for e in error]} (mean {float(error.mean()):.3f}) "
              f"in {time.time() - start:.0f} s")

    paths = [out / "inversion.png", out / "inversion.json"]
    plots.save(saliency_plots.inversion_grid(model, x, reconstructions, errors), paths[0])
    report = {layer: {"relative_feature_error": [round(float(v), 4) for v in e], "mean": round(float(e.mean()), 4)}
              for layer, e in errors.items()}
    paths[1].write_text(json.dumps({"checkpoint": args.checkpoint, "weights": args.weights,
                                    "images": list(inputs.names[:len(x)]), "settings": str(synthesis.settings(
                                        "mahendran", **overrides)), "layers": report}, indent=2) + "\n")
    cli.report(paths)


if __name__ == "__main__":
    cli.run(main)
