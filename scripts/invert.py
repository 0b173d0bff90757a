"""Reconstruct images from each layer's code of a trained network (Mahendran & Vedaldi).

    python scripts/invert.py --checkpoint checkpoints/mnist_cnn --out results/saliency

Writes ``inversion.png`` (the originals, then one row of reconstructions per layer) and
``inversion.json`` (the relative feature error ``||Phi(x) - Phi_0|| / ||Phi_0||`` each
reconstruction reached, per layer).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import jax
import numpy as np

from jaxvis import checkpoint, data, plots, synthesis
from jaxvis.plots import saliency as saliency_plots


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", required=True, help="a checkpoint directory (with card.json)")
    parser.add_argument("--dataset", default="mnist_sample")
    parser.add_argument("--split", default="test")
    parser.add_argument("--data-dir")
    parser.add_argument("--out", default="outputs/inversion")
    parser.add_argument("--layers", nargs="+", help="default: every relu and pool layer, and the logits")
    parser.add_argument("--num-images", type=int, default=6, help="the first image of classes 0, 1, ...")
    parser.add_argument("--steps", type=int, help="replace the preset's number of steps")
    parser.add_argument("--seed", type=int, default=0, help="the random starting images")
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    overrides = {} if args.steps is None else {"steps": args.steps}

    model, params, _ = checkpoint.restore_model(args.checkpoint)
    layers = args.layers or [n for n in model.names if model.layer(n).kind in ("relu", "max_pool")] + [model.names[-1]]
    dataset = data.open_dataset(args.dataset, args.split, data_dir=args.data_dir)
    images, labels = next(iter(dataset.batches(dataset.num_examples)))
    chosen = [int(np.flatnonzero(labels == c)[0]) for c in range(args.num_images)]
    x = model.normalize(images[chosen])

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
    paths[1].write_text(json.dumps({"checkpoint": args.checkpoint, "settings": str(synthesis.settings(
        "mahendran", **overrides)), "layers": report}, indent=2) + "\n")
    for path in paths:
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
