"""Saliency maps, localization boxes and the faithfulness table of a trained network.

    python scripts/saliency.py --checkpoint checkpoints/mnist_cnn --out results/saliency
    python scripts/saliency.py --weights vgg16.pth --model vgg16 --image photos/ --class predicted

Writes ``methods.png`` (images x methods, with the localization box of the gradient
map), ``curves.png`` (mean deletion and insertion curves) and ``faithfulness.md`` /
``faithfulness.json``: the mean area under each method's deletion curve (lower is more
faithful) and insertion curve (higher is more faithful) over ``--per-class`` images of
each class. Pixels are removed to, or added to, the black image. Occlusion
(:func:`jaxvis.occlusion.sweep`, black occluder, Captum's per-pixel attribution) joins
the table unless ``--no-occlusion``. Two control maps calibrate the table: the pixel
intensity itself (with a black baseline, any map that ranks the ink first removes the
digit quickly) and a uniformly random map. With ``--image`` every photo is explained for
its predicted class (or the one ``--class`` names) and ``faithfulness.json`` lists each
photo's prediction.
"""

from __future__ import annotations

import json
import time

import jax
import numpy as np

from jaxvis import cli, occlusion, plots, saliency
from jaxvis.plots import saliency as saliency_plots


def main(argv=None) -> None:
    parser = cli.parser(__doc__, out="outputs/saliency")
    cli.add_class(parser)
    parser.add_argument("--num-images", type=cli.count, default=8,
                        help="images in methods.png (classes 0, 1, ...; photos: the first N)")
    parser.add_argument("--per-class", type=cli.count, default=20, help="images of each class in the table")
    parser.add_argument("--steps", type=cli.count, default=28, help="points on each deletion/insertion curve")
    parser.add_argument("--occlusion-patch", type=cli.count, help="default: a seventh of the image (4 on 28x28)")
    parser.add_argument("--occlusion-stride", type=cli.count, help="default: half the patch")
    parser.add_argument("--methods", nargs="+", default=list(saliency.METHODS), choices=saliency.METHODS,
                        help="the gradient-family methods (default: all)")
    parser.add_argument("--no-occlusion", action="store_true")
    parser.add_argument("--no-controls", action="store_true", help="leave out the two control maps")
    parser.add_argument("--seed", type=int, default=0, help="SmoothGrad's noise and the random control map")
    args = parser.parse_args(argv)
    out = cli.output_dir(args)
    start = time.time()

    model, params, card = cli.open_network(args)
    names = cli.class_names(args, model, card)
    inputs = cli.open_inputs(args, model, lambda labels: cli.first_per_class(labels, args.per_class, model.num_classes))
    x = model.normalize(inputs.pixels_NHWC)
    probs = cli.predict(model, params, x)
    y, target = cli.targets(args, names, inputs.labels_N, probs)
    key = jax.random.key(args.seed)

    maps = saliency.method_maps(model, params, x, y, args.methods, key=key)
    if not args.no_occlusion:
        black = saliency.black(model, x[:1])[0, 0, 0]
        patch, stride = cli.occluder(model.input_shape[:2], args.occlusion_patch, args.occlusion_stride, 2)
        maps["occlusion"] = occlusion.sweep(model, params, x, y, patch, stride, fill=black).attribution_NHW

    by_class = inputs.labels_N is not None and args.target is None
    shown = cli.first_per_class(y, 1, model.num_classes)[:args.num_images] if by_class \
        else np.arange(min(args.num_images, len(y)))
    boxes = jax.vmap(saliency.localization_box)(maps["gradient"][shown]) if "gradient" in maps else None
    paths = [out / "methods.png", out / "curves.png", out / "faithfulness.md", out / "faithfulness.json"]
    plots.save(saliency_plots.methods_grid(model, x[shown], {m: v[shown] for m, v in maps.items()},
                                           [f"{inputs.names[i]}\n{names.name(y[i])}" for i in shown], boxes), paths[0])

    if not args.no_controls:
        maps["pixel intensity (control)"] = np.asarray(model.denormalize(x)).max(axis=-1)
        maps["random (control)"] = jax.random.uniform(jax.random.fold_in(key, 1), x.shape[:3])
    deletion = {m: saliency.deletion(model, params, x, v, y, steps=args.steps) for m, v in maps.items()}
    insertion = {m: saliency.insertion(model, params, x, v, y, steps=args.steps) for m, v in maps.items()}
    plots.save(saliency_plots.curves_figure(deletion, insertion), paths[1])

    table = {m: {"deletion_area": float(np.mean(deletion[m].area)), "insertion_area": float(np.mean(insertion[m].area)),
                 "deletion_area_sem": float(np.std(deletion[m].area) / np.sqrt(len(y))),
                 "insertion_area_sem": float(np.std(insertion[m].area) / np.sqrt(len(y)))} for m in maps}
    chosen = f"{args.per_class} per class" if inputs.labels_N is not None else "every photo"
    lines = [f"Faithfulness of saliency maps: {model.name} ({cli.source(args)}), {len(y)} images of "
             f"{inputs.source} ({chosen}), each explained for its {target}, {args.steps} steps per curve, "
             "black baseline.", "",
             "| method | deletion area (lower is better) | insertion area (higher is better) |", "|---|---|---|"]
    lines += [f"| {m} | {t['deletion_area']:.3f} ± {t['deletion_area_sem']:.3f} | "
              f"{t['insertion_area']:.3f} ± {t['insertion_area_sem']:.3f} |" for m, t in table.items()]
    lines += ["", "± is the standard error of the mean over images."]
    paths[2].write_text("\n".join(lines) + "\n")
    report = {"checkpoint": args.checkpoint, "weights": args.weights, "card_test_accuracy": card.get("test_accuracy"),
              "images": len(y), "class": target, "steps": args.steps, "methods": table}
    if args.image:
        report["photos"] = cli.photo_records(inputs, names, probs, y)
    paths[3].write_text(json.dumps(report, indent=2) + "\n")
    print("\n".join(lines))
    cli.report(paths)
    print(f"done in {time.time() - start:.0f} s")


if __name__ == "__main__":
    cli.run(main)
