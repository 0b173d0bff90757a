"""Benchmark: deconvnet projections of the top-9 activations of 32 maps per layer,
jaxvis batched (receptive-field crops, vmapped) against Captum's NeuronDeconvolution
called once per projection, side by side in one run.

    python scripts/bench_deconvnet.py              # vgg16, random weights, 224x224
    python scripts/bench_deconvnet.py --quick      # fewer images and Captum calls

Prints a markdown table: projections per second for each side and their ratio, a row
per layer. Captum is timed on a subset of the same projections (it costs one full
forward and backward per projection); both sides produce the same projections (checked:
the median relative difference, and how many differ by more than 1e-4. On these smooth
images some max-pool windows hold two values within 1e-7 of each other, so float noise
in either forward pass can flip a switch and move part of a projection elsewhere).
Both sides compute in float32 (TF32 is switched off on GPUs), and Captum gets one untimed
warm-up call per layer.
"""

from __future__ import annotations

import argparse
import platform
import time

import jax
import numpy as np

from jaxvis import models, topk


def smooth_images(n: int, size: int, seed: int) -> np.ndarray:
    """Random images with structure at several scales (white noise makes every unit alike)."""
    rng = np.random.default_rng(seed)
    out = np.zeros((n, size, size, 3), np.float32)
    for scale in (4, 16, 56):
        coarse = rng.normal(size=(n, scale, scale, 3)).astype(np.float32)
        out += np.asarray(jax.image.resize(coarse, (n, size, size, 3), "linear"))
    return out


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="vgg16")
    parser.add_argument("--layers", default="conv1_2,conv3_3,conv5_3")
    parser.add_argument("--images", type=int, default=64, help="dataset the top-9 are taken over")
    parser.add_argument("--maps", type=int, default=32)
    parser.add_argument("--captum-calls", type=int, default=12, help="Captum projections timed per layer")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--torch-device", help="where Captum runs (default: cuda when torch sees a GPU, else cpu)")
    args = parser.parse_args(argv)
    jax.config.update("jax_default_matmul_precision", "highest")  # float32 on both sides: no TF32 on GPUs
    if args.quick:
        args.images, args.captum_calls = 16, 3

    model = models.build(args.model)
    params = model.init(jax.random.key(0))
    x = smooth_images(args.images, model.input_shape[0], 0)
    layers = args.layers.split(",")
    tops = topk.top_k(model, params, [x[i:i + 8] for i in range(0, len(x), 8)], layers, k=9, one_per_image=True)

    try:
        import torch
        from captum.attr import NeuronDeconvolution

        from jaxvis import weights
        torch.backends.cudnn.allow_tf32 = False
        device = args.torch_device or ("cuda" if torch.cuda.is_available() else "cpu")
        net = weights.torch_module(model, params).to(device)
    except ImportError:
        net, device = None, None
        print("captum/torch not installed: jaxvis side only (pip install -r requirements-compare.txt)")

    rows = []
    for layer in layers:
        maps = np.arange(args.maps)
        topk.project_top_k(model, params, x, tops[layer], layer, maps=maps)  # compile every shape it needs
        start = time.perf_counter()
        patches = topk.project_top_k(model, params, x, tops[layer], layer, maps=maps)
        jax_rate = patches.projection[..., 0].size / patches.projection[0, 0, ..., 0].size / (time.perf_counter() - start)
        row = {"layer": layer, "field": model.receptive_field(layer).size[0], "jaxvis": jax_rate}
        if net is not None:
            module = net.features[model.names.index(layer)]
            deconv = NeuronDeconvolution(net, module)
            field = model.receptive_field(layer)
            calls = [(c, j) for c in range(args.maps) for j in range(9)][:args.captum_calls]
            diffs = []
            deconv.attribute(torch.from_numpy(x[:1].transpose(0, 3, 1, 2)).to(device).requires_grad_(),
                             neuron_selector=(0, 0, 0))  # warm-up: cuDNN picks its kernels on the first call
            start = time.perf_counter()
            for c, j in calls:
                i, r, q = int(tops[layer].image[c, j]), int(tops[layer].row[c, j]), int(tops[layer].col[c, j])
                inp = torch.from_numpy(x[i:i + 1].transpose(0, 3, 1, 2)).to(device).requires_grad_()
                attr = deconv.attribute(inp, neuron_selector=(c, r, q)).detach().cpu().numpy()[0].transpose(1, 2, 0)
                # same projection? jaxvis keeps the activation's value, Captum seeds with 1
                top_, left, h, w = field.window(r, q)
                m = h
                crop = np.pad(attr, ((m, m), (m, m), (0, 0)))[top_ + m:top_ + m + h, left + m:left + m + w]
                ours = patches.projection[c, j] / float(tops[layer].value[c, j])
                diffs.append(float(np.abs(ours - crop).max() / max(np.abs(crop).max(), 1e-30)))
            row["captum"] = len(calls) / (time.perf_counter() - start)
            row["diffs"] = np.asarray(diffs)
        rows.append(row)

    print(f"\n{args.model}, random weights, {model.input_shape[0]}x{model.input_shape[1]}, top-9 of {args.maps} maps "
          f"over {args.images} images; {platform.processor() or platform.machine()}, "
          f"{jax.devices()[0].platform}, {jax.local_device_count()} device(s); Captum on {device or '-'}\n")
    print("| layer | receptive field | jaxvis proj/s | Captum proj/s | ratio | rel diff: median | above 1e-4 |")
    print("|---|---|---|---|---|---|---|")
    for row in rows:
        captum = row.get("captum")
        cells = ["-", "-", "-", "-"] if captum is None else \
            [f"{captum:.2f}", f"{row['jaxvis'] / captum:.1f}x", f"{np.median(row['diffs']):.1e}",
             f"{int((row['diffs'] > 1e-4).sum())} of {len(row['diffs'])}"]
        print(f"| {row['layer']} | {row['field']} | {row['jaxvis']:.1f} | " + " | ".join(cells) + " |")

if __name__ == "__main__":
    main()
