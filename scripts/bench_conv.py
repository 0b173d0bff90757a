"""Convolution throughput of the backends, the floor under every other benchmark here.

    python scripts/bench_conv.py       # about a minute on 2 cores

3x3 stride-1 convolutions of the shapes jaxvis runs most: mnist_cnn's layers in training
(batch 128) and in an occlusion sweep (625 positions' windows), and vgg16's wide windows
(8 positions). For each: XLA's direct convolution (``jaxvis.layers.conv2d``), XLA by
Winograd's F(2x2, 3x3) (``jaxvis.layers.winograd_conv``, the incremental occlusion path on
CPU), XLA by im2col (the 9 shifted inputs side by side, one matrix product), and torch's
(oneDNN on CPU) in NCHW and channels-last. ``XLA_FLAGS`` (printed in the header) tries
XLA:CPU's options, e.g. ``--xla_cpu_use_xnnpack=true``. Rates are multiply-adds of
the direct convolution per second (GMAC/s), forward only, float32, median of repeats.
"""

import argparse
import os
import platform
import time

import jax
import numpy as np

from jaxvis import layers as L

SHAPES = [  # (what, batch, input side, in channels, out channels); "same" padding
    ("mnist_cnn conv2, training batch", 128, 28, 32, 32),
    ("mnist_cnn conv4, training batch", 128, 14, 64, 64),
    ("mnist_cnn conv4, occlusion windows", 625, 9, 64, 64),
    ("vgg16 conv2_2, occlusion windows", 8, 15, 128, 128),
    ("vgg16 conv3_3, occlusion windows", 8, 14, 256, 256),
    ("vgg16 conv5_3, occlusion windows", 8, 14, 512, 512),
]


def im2col_conv(x, k):
    """A 3x3 "same" convolution as one matrix product over the 9 shifted inputs."""
    n, h, w, c = x.shape
    xp = jax.numpy.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
    cols = jax.numpy.concatenate([xp[:, i:i + h, j:j + w] for i in range(3) for j in range(3)], axis=-1)
    return (cols.reshape(-1, 9 * c) @ k.reshape(9 * c, -1)).reshape(n, h, w, -1)


def seconds(fn, repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=10)
    args = parser.parse_args()
    import torch

    rng = np.random.default_rng(0)
    rows = []
    for what, n, side, cin, cout in SHAPES:
        x = rng.normal(size=(n, side, side, cin)).astype(np.float32)
        k = (rng.normal(size=(3, 3, cin, cout)) / np.sqrt(9 * cin)).astype(np.float32)
        macs = n * side * side * 9 * cin * cout
        direct = jax.jit(lambda x, k: L.conv2d(x, k, padding=((1, 1), (1, 1))))
        winograd = jax.jit(lambda x, u: L.winograd_conv(jax.numpy.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0))), u))
        im2col = jax.jit(im2col_conv)
        xj, kj, uj = jax.device_put(x), jax.device_put(k), L.winograd_kernel(jax.device_put(k))
        for other in (winograd(xj, uj), im2col(xj, kj)):
            np.testing.assert_allclose(np.asarray(other), np.asarray(direct(xj, kj)), rtol=1e-4, atol=1e-4)
        xt = torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))
        kt = torch.from_numpy(np.ascontiguousarray(k.transpose(3, 2, 0, 1)))
        xl = xt.contiguous(memory_format=torch.channels_last)
        with torch.no_grad():
            rates = [macs / seconds(lambda: direct(xj, kj).block_until_ready(), args.repeats),
                     macs / seconds(lambda: winograd(xj, uj).block_until_ready(), args.repeats),
                     macs / seconds(lambda: im2col(xj, kj).block_until_ready(), args.repeats),
                     macs / seconds(lambda: torch.nn.functional.conv2d(xt, kt, padding=1), args.repeats),
                     macs / seconds(lambda: torch.nn.functional.conv2d(xl, kt, padding=1), args.repeats)]
        rows.append((what, n, side, cin, cout, *[r / 1e9 for r in rates]))

    print(f"{platform.machine()}, {jax.devices()[0].device_kind} ({jax.default_backend()}), jax {jax.__version__}, "
          f"torch {torch.__version__} ({torch.get_num_threads()} threads), XLA_FLAGS={os.environ.get('XLA_FLAGS', '')!r}\n")
    print("| convolution | batch | side | in -> out | XLA direct | XLA Winograd | XLA im2col | torch NCHW "
          "| torch channels-last | best torch / XLA direct |")
    print("|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|")
    for what, n, side, cin, cout, xd, xw, xi, tn, tl in rows:
        print(f"| {what} | {n} | {side} | {cin} -> {cout} | {xd:.0f} | {xw:.0f} | {xi:.0f} | {tn:.0f} | {tl:.0f} "
              f"| {max(tn, tl) / xd:.1f}x |")
    print("\nGMAC/s (multiply-adds of the direct convolution per second), forward, float32.")


if __name__ == "__main__":
    main()
