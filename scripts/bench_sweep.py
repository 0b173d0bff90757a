"""Positions per second of the occlusion engine alone (no Captum), to compare two versions of
jaxvis on one machine, back to back.

    python scripts/bench_sweep.py                                   # this checkout's jaxvis
    cd /tmp/old && PYTHONPATH=/tmp/old python <this checkout>/scripts/bench_sweep.py

(the second runs another checkout's jaxvis: ``git worktree add /tmp/old <commit>``). Cases:
mnist_cnn (checkpoints/mnist_cnn) over ``--digits`` bundled test digits with a 4x4 occluder
at stride 1 (625 positions each): full re-inference, exact incremental and drill-down from
stride 4 (r 0.25); vgg16 at 64x64 (random weights) over ``--vgg-images`` digits scaled up,
a 16x16 occluder at stride 4 (169 positions each), full and exact incremental. Each
sweep runs ``--repeats`` times and the best rate is kept; compilation is left out
(``bench_occlusion.compile_time``). A rate counts the grid's positions. Prints a markdown
table with the jaxvis imported (its path and commit) and the load before and after.
"""

import argparse
import os
import subprocess
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

import jaxvis
from bench_occlusion import ROOT, compile_time, uptime
from jaxvis import checkpoint, data, models, occlusion

MNIST = [("full re-inference", {}), ("incremental, exact", dict(method="incremental")),
         ("drill-down 4->1, r 0.25", dict(method="incremental", coarse_stride=4))]
VGG = [("full re-inference", {}), ("incremental, exact", dict(method="incremental"))]


def best_rate(repeats: int, model, params, x, labels, patch, stride, **kwargs) -> tuple[float, float]:
    """The best grid positions/second over ``repeats`` sweeps (compilation left out) and its seconds."""
    best = 0.0, float("inf")
    for _ in range(repeats):
        with compile_time() as compiling:
            start = time.perf_counter()
            maps = occlusion.sweep(model, params, x, labels, patch, stride, **kwargs)
            seconds = time.perf_counter() - start - compiling[0]
        best = max(best, (maps.prob_NPQ.size / seconds, seconds))
    return best


def source() -> str:
    """Where the imported jaxvis lives, its commit, and whether its package differs from that commit."""
    where = Path(jaxvis.__file__).resolve().parent.parent

    def git(*command):
        return subprocess.run(["git", "-C", str(where), *command], capture_output=True, text=True)

    changed = git("diff", "--quiet", "HEAD", "--", "jaxvis").returncode
    return f"{where} ({git('log', '-1', '--format=%h %cs').stdout.strip()}{', with changes to jaxvis/' * changed})"


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--digits", type=int, default=64, help="digits in the mnist_cnn case")
    parser.add_argument("--vgg-images", type=int, default=2, help="images in the vgg16 case (0: skip it)")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    print(f"jaxvis from {source()}; jax {jax.__version__}, {os.cpu_count()} cores")
    print(f"load before: {uptime()}")
    sample = data.open_dataset("mnist_sample", "test")
    images, labels = next(iter(sample.batches(max(args.digits, args.vgg_images))))
    rows = []
    model, params, _ = checkpoint.restore_model(ROOT / "checkpoints" / "mnist_cnn")
    x = np.asarray(model.normalize(images[:args.digits]), np.float32)
    for name, kwargs in MNIST:
        rate, seconds = best_rate(args.repeats, model, params, x, labels[:args.digits], 4, 1, **kwargs)
        rows.append(f"| mnist_cnn 28, 4x4 stride 1, {args.digits} digits | {name} | {seconds:.2f} | {rate:,.0f} |")
        print(rows[-1], flush=True)
    if args.vgg_images:
        model = models.build("vgg16", input_size=64, num_classes=10)
        params = model.init(jax.random.key(0))
        n = args.vgg_images
        pixels = jax.image.resize(jnp.asarray(images[:n, :, :, 0], jnp.float32) / 255, (n, 64, 64), "linear")
        x = np.asarray(model.normalize(np.repeat(np.asarray(pixels)[..., None], 3, axis=-1)), np.float32)
        for name, kwargs in VGG:
            rate, seconds = best_rate(args.repeats, model, params, x, labels[:n], 16, 4, **kwargs)
            rows.append(f"| vgg16 64 (random), 16x16 stride 4, {n} images | {name} | {seconds:.2f} | {rate:,.0f} |")
            print(rows[-1], flush=True)
    print("\n| case | method | seconds | positions/s |\n|---|---|--:|--:|")
    print("\n".join(rows))
    print(f"\nload after: {uptime()}")


if __name__ == "__main__":
    from jaxvis import cli

    cli.run(main)
