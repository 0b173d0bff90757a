"""The demo: what jaxvis shows on the shipped MNIST model and the bundled sample, and the
HTML report (scripts/explain.py) on the bundled photos with vgg16's random weights.

    make demo            # or: python scripts/demo.py --out outputs

Writes PNG figures under ``--out``, the report under ``--out/report/``, and prints where
each went.
"""

from __future__ import annotations

import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from jaxvis import cli, data, figures, images, plots, report, topk
from jaxvis.plots import deconvnet
from jaxvis.project import project_strongest

ROOT = Path(__file__).resolve().parent.parent


def deconvnet_figures(model, params, x_NHWC, labels, images_all, out: Path) -> list[Path]:
    """Single-image mode (strongest map per layer; each ReLU rule) and the Fig. 2 sheets."""
    layers = list(report.spatial_layers(model))
    names = [f"digit {int(c)}" for c in labels]
    written = [out / "deconvnet_layers.png", out / "deconvnet_rules.png"]
    per_layer = {n: np.asarray(project_strongest(model, params, x_NHWC, n)[0]) for n in layers}
    plots.save(deconvnet.strongest_per_layer(model, x_NHWC, per_layer, names,
                                             "Strongest map of each layer, projected alone (deconvnet)"), written[0])
    top = layers[-1]
    per_rule = {r: np.asarray(project_strongest(model, params, x_NHWC, top, r)[0])
                for r in ("deconvnet", "guided", "gradient")}
    plots.save(deconvnet.strongest_per_layer(model, x_NHWC, per_rule, names,
                                             f"{top}: strongest map under each ReLU backward rule"), written[1])
    for layer in ("relu2", "relu4"):
        top9 = topk.top_k(model, params, [images_all], layer, k=9, one_per_image=True)
        patches = topk.project_top_k(model, params, images_all, top9, layer, maps=range(8))
        path = out / f"deconvnet_top9_{layer}.png"
        plots.save(deconvnet.layer_sheet(model, patches, layer), path)
        written.append(path)
    return written


# The report's demo settings, chosen so that the whole demo stays under 3 minutes on 2
# cores: two photos at 112x112 (vgg16's adaptive pool takes any size), one layer per
# block, the transformed photos projected at the deepest only, a coarse occluder, no class
# model or inversion.
REPORT_PHOTOS = ("chelsea.jpg", "coffee.jpg")
REPORT_SIZE = 112
REPORT_LAYERS = ("relu1_2", "relu2_2", "relu3_3", "relu4_3", "relu5_3")
REPORT_SETTINGS = report.Settings(
    layers=REPORT_LAYERS, transform_layers=REPORT_LAYERS[-1:], patch=24, stride=12,
    note="Demo settings (chosen to keep make demo short on 2 cores): 2 photos at 112x112, the last rectified layer "
         "of each block (the transformed photos: the deepest), a 24px occluder at stride 12; class model and "
         "inversion off. scripts/explain.py's defaults: 224x224, every conv and pool layer (the transformed photos: "
         "the three deepest), a 32px occluder at stride 16.")


def report_demo(out: Path) -> Path:
    """The HTML report on the bundled photos, vgg16 with random weights in torchvision's layout."""
    net = report.random_network("vgg16", REPORT_SIZE)
    photos = images.load([images.SAMPLE_PHOTOS / name for name in REPORT_PHOTOS], "torchvision",
                         size=net.model.input_shape[:2])
    notes = [[n] if n else [] for n in photos.notes]
    return report.write(net, photos.pixels_NHWC, [p.name for p in photos.paths], out / "report", REPORT_SETTINGS,
                        notes)


def main(argv=None) -> None:
    parser = cli.parser(__doc__, out="outputs", checkpoint=str(ROOT / "checkpoints" / "mnist_cnn"), dataset=None)
    parser.add_argument("--num-images", type=cli.count, default=6, help="digits 0..N-1 from the bundled sample")
    args = parser.parse_args(argv)
    out = cli.output_dir(args)
    start = time.time()

    model, params, card = cli.open_network(args)
    sample = data.open_dataset("mnist_sample", "test")
    digits, labels = next(iter(sample.batches(sample.num_examples)))
    chosen = cli.first_per_class(labels, 1, args.num_images)
    x = model.normalize(digits[chosen])
    logits, _ = jax.jit(model.apply)(params, model.normalize(digits))
    accuracy = float(jnp.mean(jnp.argmax(logits, -1) == labels))
    full = card.get("test_accuracy")
    print(f"{model.name} from {args.checkpoint}: {accuracy:.2%} on the {len(labels)} bundled sample digits "
          f"(card: {'n/a' if full is None else f'{full:.2%}'} on the full test set)")

    written = deconvnet_figures(model, params, x, labels[chosen], digits, out)
    written += figures.occlusion_demo(model, params, x[:4], labels[chosen][:4], out)
    written += figures.saliency_demo(model, params, x, labels[chosen], out)
    cli.report(written)
    mnist_done = time.time()
    print(f"wrote {report_demo(out)} in {time.time() - mnist_done:.0f} s")
    print(f"demo done in {time.time() - start:.0f} s")


if __name__ == "__main__":
    cli.run(main)
