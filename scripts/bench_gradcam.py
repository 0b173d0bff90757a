"""Benchmark: Grad-CAM of every ImageNet class of one photo on VGG-16 (random weights,
224x224, layer relu5_3), jaxvis in one batched call against Captum's ``LayerGradCam``
called once per class; then one class alone, and guided Grad-CAM (``GuidedGradCam``).

    python scripts/bench_gradcam.py                       # chelsea.jpg, Captum on 20 classes
    python scripts/bench_gradcam.py --captum-classes 50 --photo my.jpg

Captum costs one full forward and one backward to the layer per class, so it is timed on
``--captum-classes`` classes, the top-scoring ones (after one untimed warm-up call), and
its time per class is extrapolated to all classes; the table says so. jaxvis times are the best of
``--repeats`` calls after a first call that compiles (its time is printed apart). Both
sides compute in float32; their maps are compared on the classes Captum ran (max |diff|
/ max |Captum|). The machine's load average is printed with the numbers: on shared
machines, compare ratios from one run only.
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from pathlib import Path

import jax
import numpy as np
from PIL import Image

from jaxvis import cli, models, saliency, weights

PHOTO = Path(__file__).resolve().parents[1] / "jaxvis" / "sample" / "photos" / "chelsea.jpg"


def best_time(fn, repeats: int) -> tuple[float, float, object]:
    """(seconds of the first call, best seconds of ``repeats`` more, the last result)."""
    start = time.perf_counter()
    out = jax.block_until_ready(fn())
    first = time.perf_counter() - start
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        out = jax.block_until_ready(fn())
        times.append(time.perf_counter() - start)
    return first, min(times), out


def rel(a, b) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-30))


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--photo", default=str(PHOTO), help="resized to 224x224 (default: the bundled cat)")
    parser.add_argument("--captum-classes", type=cli.count, default=20, help="classes Captum is timed on")
    parser.add_argument("--guided-classes", type=cli.count, default=4, help="classes guided Grad-CAM is timed on")
    parser.add_argument("--repeats", type=cli.count, default=2)
    parser.add_argument("--memory-budget", type=float, default=1e9, help="jaxvis's bytes per chunk of classes")
    args = parser.parse_args(argv)
    jax.config.update("jax_default_matmul_precision", "highest")  # float32 on both sides: no TF32 on GPUs

    model = models.build("vgg16")
    params = model.init(jax.random.key(0))
    with Image.open(args.photo) as photo:
        pixels = np.asarray(photo.convert("RGB").resize(model.input_shape[:2], Image.BILINEAR), np.float32) / 255
    x = np.asarray(model.normalize(pixels[None]))
    num_classes, layer = model.num_classes, saliency.cam_layer(model)
    # the top-scoring classes: their maps are seldom all zero, so the comparison means something
    classes = np.argsort(-np.asarray(model.apply(params, x)[0][0]))[:args.captum_classes]
    guided_classes = classes[:args.guided_classes]

    jax_all = best_time(lambda: saliency.grad_cam(model, params, x, "all", memory_budget=args.memory_budget),
                        args.repeats)
    jax_one = best_time(lambda: saliency.grad_cam(model, params, x, int(classes[0])), args.repeats)
    jax_guided_one = best_time(lambda: saliency.guided_grad_cam(model, params, x, int(classes[0])), args.repeats)
    jax_guided = best_time(lambda: saliency.guided_grad_cam(model, params, x, guided_classes[None],
                                                            memory_budget=args.memory_budget), args.repeats)

    import torch
    from captum.attr import GuidedGradCam, LayerAttribution, LayerGradCam
    torch.backends.cudnn.allow_tf32 = False
    net = weights.torch_module(model, params)
    module = net.features[model.names.index(layer)]
    x_torch = torch.from_numpy(x.transpose(0, 3, 1, 2).copy())
    grad_cam, guided_grad_cam = LayerGradCam(net, module), GuidedGradCam(net, module)

    def captum(method, targets, **kwargs):
        """(seconds per class, the attributions) after one untimed warm-up call."""
        method.attribute(x_torch.clone().requires_grad_(), target=int(targets[0]), **kwargs)
        start = time.perf_counter()
        out = [method.attribute(x_torch.clone().requires_grad_(), target=int(c), **kwargs).detach().numpy()
               for c in targets]
        return (time.perf_counter() - start) / len(targets), np.concatenate(out)

    captum_cam, cam_maps = captum(grad_cam, classes, relu_attributions=True)
    captum_guided, guided_maps = captum(guided_grad_cam, guided_classes, interpolate_mode="bilinear")
    cam_err = rel(jax_all[2][0, classes], cam_maps[:, 0])
    guided_err = rel(np.asarray(jax_guided[2][0]).transpose(0, 3, 1, 2), guided_maps)
    one_err = rel(jax_one[2], cam_maps[:1, 0])
    guided_one_err = rel(np.asarray(jax_guided_one[2]).transpose(0, 3, 1, 2), guided_maps[:1])

    load = ", ".join(f"{v:.1f}" for v in os.getloadavg())
    print(f"\nvgg16, random weights, 224x224 photo {Path(args.photo).name}, Grad-CAM at {layer}; "
          f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs (load average {load}), "
          f"jax {jax.__version__} on {jax.devices()[0].platform}, torch {torch.__version__} with "
          f"{torch.get_num_threads()} threads\n")
    print("| what | jaxvis s (first call, with compile) | Captum s | Captum / jaxvis | max rel diff |")
    print("|---|---|---|---|---|")
    rows = [
        (f"Grad-CAM, all {num_classes} classes", jax_all, captum_cam * num_classes,
         f"{captum_cam:.3f} s/class x {num_classes} (timed on {len(classes)} classes)", cam_err),
        ("Grad-CAM, one class", jax_one, captum_cam, f"{captum_cam:.3f}", one_err),
        ("guided Grad-CAM, one class", jax_guided_one, captum_guided, f"{captum_guided:.3f}", guided_one_err),
        (f"guided Grad-CAM, {len(guided_classes)} classes in one call", jax_guided,
         captum_guided * len(guided_classes), f"{captum_guided:.3f} s/class x {len(guided_classes)}", guided_err),
    ]
    for what, (first, best, _), captum_s, captum_text, err in rows:
        print(f"| {what} | {best:.3f} ({first:.1f}) | {captum_text} | {captum_s / best:.1f}x | {err:.1e} |")
    print(f"\nGoal: all classes >= 20x Captum per class; measured {captum_cam * num_classes / jax_all[1]:.1f}x.")


if __name__ == "__main__":
    cli.run(main)
