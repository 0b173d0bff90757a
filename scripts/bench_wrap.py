"""Benchmark: a wrapped Flax linen network against the same network as a jaxvis tuple,
side by side in one run (same weights, same images).

    python scripts/bench_wrap.py            # a VGG-like network at 64x64, 8 images
    python scripts/bench_wrap.py --quick    # 32x32, 4 images

Prints a markdown table: per method (deconvnet projections at two layers, saliency maps
with the gradient and guided rules) the time of one call after compilation, for the
tuple and the wrapped network, and their ratio (goal: wrapped within 1.3x); then the
rewrite's own cost (tracing the Flax module, reading its layers, and interpreting the
jaxpr with the rule's ReLUs into a new one) against the first call of the wrapped
projection, which compiles it (goal: the rewrite costs less). Times are medians of
``--repeats`` calls, the two networks taking turns.
"""

from __future__ import annotations

import argparse
import time

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jaxvis import cli, models, saliency
from jaxvis.project import Select, project_batch
from jaxvis.wrap import wrap_linen


def network(size: int) -> models.Model:
    """A VGG-like tuple: three blocks of two 3x3 convolutions and a 2x2 pool, two dense layers."""
    layers = []
    for b, width in enumerate((32, 64, 128), start=1):
        layers += [models.conv(f"conv{b}_1", width, 3, padding=1), models.relu(f"relu{b}_1"),
                   models.conv(f"conv{b}_2", width, 3, padding=1), models.relu(f"relu{b}_2"),
                   models.max_pool(f"pool{b}", 2)]
    layers += [models.flatten("flatten"), models.dense("fc1", 256), models.relu("relu_fc1"), models.dense("fc2", 10)]
    return models.Model("vgg_like", tuple(layers), (size, size, 3))


class Linen(nn.Module):
    """The same network written as a Flax user would write it."""

    @nn.compact
    def __call__(self, x):
        for b, width in enumerate((32, 64, 128), start=1):
            x = nn.relu(nn.Conv(width, (3, 3), padding=1, name=f"conv{b}_1")(x))
            x = nn.relu(nn.Conv(width, (3, 3), padding=1, name=f"conv{b}_2")(x))
            x = nn.max_pool(x, (2, 2), (2, 2))
        x = nn.relu(nn.Dense(256, name="fc1")(x.reshape(x.shape[0], -1)))
        return nn.Dense(10, name="fc2")(x)


def timed(fns, repeats: int) -> list[float]:
    """Median seconds of each ``fn()`` (its result blocked on) after one untimed call; the
    functions take turns, so that a shared machine's load weighs on each alike."""
    for fn in fns:
        jax.block_until_ready(fn())
    times = [[] for _ in fns]
    for _ in range(repeats):
        for fn, kept in zip(fns, times):
            start = time.perf_counter()
            jax.block_until_ready(fn())
            kept.append(time.perf_counter() - start)
    return [float(np.median(t)) for t in times]


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--images", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    if args.quick:
        args.size, args.images, args.repeats = 32, 4, 5
    model = network(args.size)
    params = model.init(jax.random.key(0))
    x = jnp.asarray(np.random.default_rng(0).normal(size=(args.images, args.size, args.size, 3)), jnp.float32)
    module = Linen()

    start = time.perf_counter()
    wrapped, variables = wrap_linen(module, {"params": params}, x)
    wrap_s = time.perf_counter() - start
    start = time.perf_counter()
    jax.make_jaxpr(lambda v, x: wrapped.apply(v, x, rule="deconvnet")[0])(variables, x)
    rewrite_s = time.perf_counter() - start
    # the wrapped network names its ReLUs by position: relu1, relu2, ...
    relu = dict(zip([n for n in model.names if n.startswith("relu")],
                    [n for n in wrapped.names if wrapped.kinds[n] == "relu"]))
    layer = lambda m, name: name if m is model else relu[name]
    select = Select.strongest(jnp.arange(args.images) % 32)
    start = time.perf_counter()
    jax.block_until_ready(project_batch(wrapped, variables, x, relu["relu3_2"], select))
    first_s = time.perf_counter() - start

    cases = {
        "project relu2_2 (deconvnet)": lambda m, p: project_batch(m, p, x, layer(m, "relu2_2"), select),
        "project relu3_2 (deconvnet)": lambda m, p: project_batch(m, p, x, layer(m, "relu3_2"), select),
        "saliency (gradient)": lambda m, p: saliency.saliency(m, p, x, jnp.arange(args.images) % 10),
        "saliency (guided)": lambda m, p: saliency.saliency(m, p, x, jnp.arange(args.images) % 10, "guided"),
    }
    print(f"{model.name} at {args.size}x{args.size}, {args.images} images, {jax.default_backend()}, "
          f"median of {args.repeats}\n")
    print("| method | tuple (ms) | wrapped (ms) | wrapped / tuple |")
    print("|---|---:|---:|---:|")
    for name, case in cases.items():
        tuple_s, wrapped_s = timed([lambda: case(model, params), lambda: case(wrapped, variables)], args.repeats)
        print(f"| {name} | {1e3 * tuple_s:.1f} | {1e3 * wrapped_s:.1f} | {wrapped_s / tuple_s:.2f} |")
    print(f"\n| rewrite step | seconds |\n|---|---:|\n| wrap (trace the module, read its layers) | {wrap_s:.3f} |\n"
          f"| interpret the jaxpr with the deconvnet ReLUs | {rewrite_s:.3f} |\n"
          f"| rewrite, total | {wrap_s + rewrite_s:.3f} |\n"
          f"| first wrapped projection (traces, rewrites, compiles, runs) | {first_s:.3f} |")


if __name__ == "__main__":
    cli.run(main)
