"""Train an experiment of jaxvis.configs, resuming from the workdir's latest checkpoint.

    python scripts/train.py --config mnist_cnn --workdir outputs/mnist_cnn --data-dir ../shared/data/mnist
    python scripts/train.py --config mnist_cnn --workdir outputs/quick --set num_epochs=1 --set seed=3
    python scripts/train.py --config mnist_cnn --workdir outputs/seeds --seeds 0 1 2 3   # one vmapped program
    python scripts/train.py ... --export checkpoints/mnist_cnn   # params-only copy with a card

Over several hosts, give every process --coordinator-address, --num-processes and --process-id
(and the same --workdir and --export, on a file system they share); process 0 prints and writes
the card.
"""

import argparse
import datetime
import json
import os
import platform
import shlex
import subprocess
import sys
from pathlib import Path

import jax

from jaxvis import checkpoint, cli, configs, distributed, train


def _git(*args: str) -> str:
    root = Path(__file__).resolve().parent.parent
    try:
        return subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", required=True, help=f"one of {', '.join(configs.NAMES)}")
    parser.add_argument("--workdir", required=True, help="checkpoints and metrics.jsonl go here")
    parser.add_argument("--data-dir", help="where the dataset is (default: $JAXVIS_DATA_DIR, then tfds)")
    parser.add_argument("--set", type=cli.setting, action="append", default=[], metavar="KEY=VALUE",
                        help="replace a config setting (a Python literal), e.g. --set learning_rate=1e-3")
    parser.add_argument("--seeds", type=int, nargs="+", help="train one model per seed in one vmapped program")
    parser.add_argument("--export", help="write the final params and a card (accuracy, data, command, time, "
                                         "commit) to this directory")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    distributed.add_arguments(parser)
    args = parser.parse_args()
    distributed.initialize(args)  # first: anything that asks JAX about devices would start it single-process
    if args.export:  # before training, so that the mistake costs none
        checkpoint.check_export_destination(args.export)
    config = configs.get(args.config, **dict(args.set))
    options = {"data_dir": args.data_dir, "progress": not args.no_progress}
    if args.seeds:
        result = train.train_many(config, args.workdir, args.seeds, **options)
    else:
        result = train.train_and_evaluate(config, args.workdir, **options)
    is_main = distributed.is_main()
    if is_main:
        print(json.dumps({"config": config.name, "step": result["step"], "eval": result["eval"],
                          "train_seconds": round(result["train_seconds"], 1)}))
        print(f"checkpoints and metrics in {args.workdir}")
    if args.export:  # every process: orbax's save and restore synchronize them
        card = {"test_accuracy": result["eval"]["top1"], "test_top5": result["eval"]["top5"],
                "test_loss": result["eval"]["loss"], "data": result["data"],
                "command": shlex.join(["python", *sys.argv]), "train_seconds": round(result["train_seconds"], 1),
                "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores, "
                           f"{jax.device_count()} x {jax.devices()[0].device_kind}",
                "date": datetime.date.today().isoformat(), "code_commit": _git("rev-parse", "HEAD"),
                "code_modified": bool(_git("status", "--porcelain", "--", "jaxvis", "scripts"))}
        destination = checkpoint.export(args.workdir, args.export, **card)
        if is_main:
            print(f"exported to {destination}")


if __name__ == "__main__":
    cli.run(main)
