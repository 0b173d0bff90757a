"""Occlusion throughput on residual networks: Captum's Occlusion, full re-inference, exact
incremental (Krypton over the graph) and approximate (``tau``, drill-down), side by side.

    python scripts/bench_resnet_occlusion.py
    python scripts/bench_resnet_occlusion.py --only resnet18

(a) resnet18 at 224x224, random weights (``model.init``, ``fc`` scaled down so that the
softmax is not saturated), MNIST digits scaled up to 224
(``--images``), their predicted classes as targets, a 16x16 occluder on the stride-16 grid
(196 positions; Captum allows no stride larger than the occluder). (b) the shipped MNIST
ResNet (checkpoints/mnist_resnet) over ``--digits`` bundled test digits, a 4x4 occluder at
stride 1 (625 positions each; a 16x16 occluder on a 28x28 digit leaves Krypton little to
skip). Captum runs on the same weights (:func:`jaxvis.weights.torch_module`) with the
fastest of a few ``perturbations_per_eval``; its attributions are checked against the
sweep's. Approximations are judged by SSIM against the exact maps. Rates and helpers are
``bench_occlusion``'s (compilation left out of JAX's rates). Prints a markdown table.
"""

import argparse
import os
import platform

import jax
import jax.numpy as jnp
import numpy as np

from bench_occlusion import ROOT, approximate, captum_rate, jax_rate, print_table, table_rows, uptime
from jaxvis import checkpoint, data, models, weights

PATCH_RESNET, PATCH_MNIST = 16, 4


def approximations(stride: int, coarse: int) -> list[tuple[str, dict]]:
    """The approximate settings timed: Krypton's ``tau``, drill-down from ``coarse``, both."""
    drill = f"drill-down {coarse}->{stride}, r 0.25"
    return [("approximate: tau 0.5", dict(tau=0.5)), ("approximate: tau 0.3", dict(tau=0.3)),
            (f"approximate: {drill}", dict(coarse_stride=coarse)),
            (f"approximate: tau 0.5 + {drill}", dict(tau=0.5, coarse_stride=coarse))]


def bench(case, model, params, x, labels, patch, stride, coarse, trials, budget):
    """Rows for one case: Captum, full, exact incremental and the approximations on one grid."""
    grid = f"stride {stride}"
    results = {}
    net = weights.torch_module(model, params)
    c_rate, c_seconds, setting, attribution = captum_rate(net, x, labels, patch, stride, trials, 64)
    full_rate, seconds, full = jax_rate(budget, model, params, x, labels, patch, stride)
    count = full.prob_NPQ.size
    results[f"Captum Occlusion ({setting[0]} image(s) x ppe {setting[1]})"] = (c_rate, c_seconds, count, grid, None)
    results["full re-inference"] = (full_rate, seconds, count, grid, None)
    rate, seconds, exact = jax_rate(budget, model, params, x, labels, patch, stride, method="incremental")
    results["incremental, exact"] = (rate, seconds, count, grid, None)
    for name, kwargs in approximations(stride, coarse):
        approximate(results, name, jax_rate(budget, model, params, x, labels, patch, stride, method="incremental",
                                            **kwargs), exact, grid)
    check = float(np.abs(attribution - full.attribution_NHW).max() / np.abs(full.attribution_NHW).max())
    exact_err = float(np.abs(exact.prob_NPQ - full.prob_NPQ).max() / np.abs(full.prob_NPQ).max())
    note = (f"{case}: Captum's attribution vs the sweep's: max |diff| / max = {check:.1e}; "
            f"incremental vs full probabilities: {exact_err:.1e}")
    return table_rows(case, results, c_rate, full_rate), note


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", choices=("resnet18", "mnist_resnet"), help="run one case")
    parser.add_argument("--images", type=int, default=1, help="digits (scaled to 224) in the resnet18 case")
    parser.add_argument("--digits", type=int, default=16, help="digits in the mnist_resnet case")
    parser.add_argument("--memory-budget", type=float, default=2e9, help="the sweeps' memory budget in bytes")
    args = parser.parse_args(argv)
    import torch

    jax.config.update("jax_default_matmul_precision", "highest")
    print(f"{platform.machine()}, {os.cpu_count()} cores, jax {jax.__version__} ({jax.devices()[0].platform}), "
          f"torch {torch.__version__} ({torch.get_num_threads()} threads)")
    print(f"load before: {uptime()}")
    sample = data.open_dataset("mnist_sample", "test")
    images, labels = next(iter(sample.batches(sample.num_examples)))
    rows, notes = [], []
    if args.only in (None, "resnet18"):
        model = models.build("resnet18")
        params = model.init(jax.random.key(0))
        n = args.images
        pixels = np.asarray(jax.image.resize(jnp.asarray(images[:n, :, :, 0], jnp.float32) / 255, (n, 224, 224),
                                             "linear"))
        x = np.asarray(model.normalize(np.repeat(pixels[..., None], 3, axis=-1)), np.float32)
        logits = np.asarray(jax.jit(lambda v: model.apply(params, v)[0])(x))
        # He init through eight residual blocks gives logits in the hundreds, a softmax of 1 at
        # every position and an empty map: scale fc so that the logits' spread is 2
        scale = 2 / logits.std()
        params = {**params, "fc": {leaf: v * scale for leaf, v in params["fc"].items()}}
        predicted = logits.argmax(-1)
        case_rows, note = bench(f"resnet18 224 (random), 16x16, {n} image(s)", model, params, x, predicted,
                                PATCH_RESNET, PATCH_RESNET, 2 * PATCH_RESNET, [(1, 4), (1, 8), (1, 16)], args.memory_budget)
        rows, notes = rows + case_rows, notes + [note]
    if args.only in (None, "mnist_resnet"):
        model, params, _ = checkpoint.restore_model(ROOT / "checkpoints" / "mnist_resnet")
        n = args.digits
        x = np.asarray(model.normalize(images[:n]), np.float32)
        case_rows, note = bench(f"mnist_resnet 28, 4x4, {n} digits", model, params, x, labels[:n], PATCH_MNIST, 1, 4,
                                [(1, 625), (4, 128), (16, 32)], args.memory_budget)
        rows, notes = rows + case_rows, notes + [note]
    print_table(rows, notes)


if __name__ == "__main__":
    main()
