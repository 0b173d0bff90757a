"""Training speed of mnist_cnn: one model, K models one after another, K models in one program
(``train_many``, by each strategy: ``jax.vmap``, the steps unrolled, ``jax.lax.map``, ``vmap``
with per-model convolutions).

    python scripts/bench_train.py --steps 10 --models 8

Each run is a real ``train_and_evaluate``/``train_many`` call on the bundled MNIST sample
(same image size and network as MNIST, so the same speed), batch 128 per model, with
its compilation and its final evaluation. "wall s" counts everything; "images/s" is the
steady training rate, from the metrics log after the first (compiling) log window. Each
``train_many`` run starts with JAX's caches cleared, so it compiles everything it uses.
"""

import argparse
import tempfile
import time
from pathlib import Path

import jax
import numpy as np

from jaxvis import configs, train


def steady_rate(workdir: Path) -> float:
    lines = [line for line in train.read_metrics(workdir) if line["split"] == "train"]
    return float(np.median([line["images_per_second"] for line in lines[1:]]))


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=10, help="training steps per run")
    parser.add_argument("--models", type=int, default=8, help="K")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--strategies", default=",".join(train.STRATEGIES),
                        help=f"train_many strategies to time, comma-separated (of {', '.join(train.STRATEGIES)})")
    args = parser.parse_args()
    strategies = args.strategies.split(",")
    for strategy in strategies:
        if strategy not in train.STRATEGIES:
            parser.error(f"unknown strategy {strategy!r}; expected some of {', '.join(train.STRATEGIES)}")
    config = configs.get("mnist_cnn", dataset="mnist_sample", train_split="test", num_epochs=10_000,
                         max_steps=args.steps, batch_size=args.batch_size, log_every_steps=max(1, args.steps // 5),
                         checkpoint_every_steps=10 * args.steps, eval_every_epochs=10_000, eval_batch_size=500)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        began = time.perf_counter()
        rates = []
        for k in range(args.models):
            workdir = Path(tmp) / f"seq{k}"
            train.train_and_evaluate(configs.replace(config, seed=k), workdir, progress=False)
            rates.append(steady_rate(workdir))
            if k == 0:
                rows.append(("1 model", 1, time.perf_counter() - began, rates[0]))
        rows.append((f"{args.models} sequential", args.models, time.perf_counter() - began, float(np.mean(rates))))
        for strategy in strategies:
            # start from cold caches, as a fresh process would: the sequential runs above
            # compiled the single-model evaluator, which some strategies reuse
            train._evaluator.cache_clear()
            jax.clear_caches()
            began = time.perf_counter()
            train.train_many(config, Path(tmp) / strategy, seeds=range(args.models), progress=False,
                             strategy=strategy)
            rows.append((f"{args.models} in one program ({strategy})", args.models, time.perf_counter() - began,
                         steady_rate(Path(tmp) / strategy)))

    device = jax.devices()[0]
    print(f"mnist_cnn, batch {args.batch_size} per model, {args.steps} steps per run, "
          f"{jax.device_count()} x {device.device_kind} ({device.platform})\n")
    print("| run | models | wall s | images/s |")
    print("| --- | ---: | ---: | ---: |")
    for name, models, wall, rate in rows:
        print(f"| {name} | {models} | {wall:.1f} | {rate:,.0f} |")
    for row in rows[2:]:
        print(f"\n{row[0]} / sequential wall time: {row[2] / rows[1][2]:.2f} (goal <= 0.5)", end="")
    print(f"\ndefault strategy on this backend: {train.default_strategy()}")


if __name__ == "__main__":
    main()
