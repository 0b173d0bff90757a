"""Scaling of the dataset-wide jobs over processes: top-9 mining (``topk.top_k_parts``, as
``scripts/deconvnet.py`` runs it) and dataset-wide occlusion (shards of images shared out,
as ``scripts/occlusion.py`` does) with 1 and 2 ``jax.distributed`` processes, each pinned
to one core; then ImageNet's 50,000 validation images on 8 and 64 hosts, on paper.

    python scripts/bench_distributed.py            # about 5 minutes on 2 idle cores
    python scripts/bench_distributed.py --quick    # fewer images (about 2 minutes)

Measured: mnist_cnn (checkpoints/mnist_cnn) on the bundled digits, tiled, for the scaling
rows; vgg16 at 64x64 (random weights, random images) on one core as the per-image cost
of a large network, scaled to 224x224 by XLA's count of floating-point operations. Each
process is pinned to its own core: on a machine busy with other work the 2-process rows
share those cores and understate the scaling.
Rates leave out compilation (every timed call ran once before) and include the exchange
and the waits at meeting points. Prints a markdown table, the assumptions of the
projection, and the machine's load before and after (``uptime``).
"""

import argparse
import functools
import io
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from jaxvis import checkpoint, data, distributed, models, occlusion, report, topk

ROOT = Path(__file__).resolve().parent.parent
NETWORKS = {"mnist_cnn": dict(patch=4, stride=2, batch=100, part=500),
            "vgg16_64": dict(patch=16, stride=8, batch=32, part=64)}
IMAGENET = dict(images=50_000, size=224, patch=32, stride=8)  # occlusion.py's default occluder at 224
BANDWIDTH = 1e9  # bytes/s between hosts, assumed


def network(name: str):
    if name == "mnist_cnn":
        model, params, _ = checkpoint.restore_model(ROOT / "checkpoints" / "mnist_cnn")
        images, labels = next(iter(data.open_dataset("mnist_sample", "test").batches(1000)))
        return model, distributed.local(params), images, labels
    model = models.build("vgg16", input_size=64)
    rng = np.random.default_rng(0)
    return model, model.init(jax.random.key(0)), rng.integers(0, 256, (256, 64, 64, 3), np.uint8), \
        rng.integers(0, 1000, 256)


def worker(args) -> None:
    """One process of a timed job; prints one JSON line."""
    os.sched_setaffinity(0, {args.core})  # before JAX starts XLA, which sizes its thread pool then
    distributed.initialize(args)
    model, params, images, labels = network(args.network)
    setting = NETWORKS[args.network]
    count = args.images
    x_all = np.resize(images, (count, *images.shape[1:]))  # the set tiled to ``count`` images
    y_all = np.resize(labels, count)
    layers = list(report.spatial_layers(model))

    def mine():
        def read(start, stop):
            return [x_all[i:min(i + setting["batch"], stop)] for i in range(start, stop, setting["batch"])]
        return topk.top_k_parts(model, params, read, count, layers, k=9, one_per_image=True,
                                part_size=setting["part"])

    result_bytes = [0]

    def sweep():
        shard = 8
        for s in distributed.share(-(-count // shard)):
            x = np.asarray(model.normalize(x_all[s * shard:(s + 1) * shard]))
            maps = occlusion.sweep(model, params, x, y_all[s * shard:(s + 1) * shard], setting["patch"],
                                   setting["stride"], method="incremental")
            buffer = io.BytesIO()  # what a process writes to the shared disk for the others
            np.savez(buffer, **{k: v for k, v in vars(maps).items() if isinstance(v, np.ndarray)})
            result_bytes[0] += buffer.getbuffer().nbytes
        distributed.barrier("shards done")

    job = mine if args.job == "mining" else sweep
    job()  # compiles every shape the timed run meets
    gathered, result_bytes[0] = distributed.gathered_bytes(), 0
    distributed.barrier("start")
    began = time.perf_counter()
    job()
    seconds = time.perf_counter() - began
    print(json.dumps({"seconds": seconds, "images": count, "gathered_bytes": distributed.gathered_bytes() - gathered,
                      "result_bytes": result_bytes[0], "process": jax.process_index()}), flush=True)


def run(job: str, name: str, processes: int, images: int) -> dict:
    """The job over ``processes`` pinned processes; process 0's record, with every process's
    gathered and result bytes summed."""
    with socket.socket() as s:
        s.bind(("localhost", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "PYTHONPATH": str(ROOT)}
    env.pop("XLA_FLAGS", None)
    several = ["--num-processes", str(processes), "--coordinator-address", f"localhost:{port}"] * (processes > 1)
    procs = [subprocess.Popen([sys.executable, __file__, "--worker", job, "--network", name, "--images", str(images),
                               "--core", str(i % os.cpu_count()), "--process-id", str(i), *several],
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for i in range(processes)]
    records = []
    for p in procs:
        out, err = p.communicate(timeout=1800)
        if p.returncode:
            raise SystemExit(f"{job} {name} with {processes} processes failed:\n{err[-3000:]}")
        records.append(json.loads(out.strip().splitlines()[-1]))
    head = records[0]
    return {**head, "seconds": max(r["seconds"] for r in records),
            "gathered_bytes": sum(r["gathered_bytes"] for r in records),
            "result_bytes": sum(r["result_bytes"] for r in records)}


def flops(name: str, size: int, spatial: bool) -> float:
    """XLA's count of one image's forward pass at ``size`` x ``size``: to the logits, or
    (``spatial``) to the deepest ReLU or pool layer, as top-k mining runs it."""
    model = models.build(name, input_size=size)
    until = list(report.spatial_layers(model))[-1] if spatial else None
    params = jax.eval_shape(model.init, jax.random.key(0))
    x = jax.ShapeDtypeStruct((1, *model.input_shape), jnp.float32)
    cost = jax.jit(functools.partial(model.apply, until=until)).lower(params, x).compile().cost_analysis()
    return float((cost[0] if isinstance(cost, list) else cost)["flops"])


def positions(size: int, patch: int, stride: int) -> int:
    return len(range(0, size - patch + 1, stride)) ** 2


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--worker", choices=("mining", "occlusion"), help=argparse.SUPPRESS)
    parser.add_argument("--network", default="mnist_cnn", help=argparse.SUPPRESS)
    parser.add_argument("--images", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--core", type=int, default=0, help=argparse.SUPPRESS)
    distributed.add_arguments(parser)  # the workers'
    args = parser.parse_args()
    if args.worker:
        args.job = args.worker
        worker(args)
        return
    load = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    counts = {("mining", "mnist_cnn"): 1000 if args.quick else 4000,
              ("occlusion", "mnist_cnn"): 16 if args.quick else 48,
              ("mining", "vgg16_64"): 32 if args.quick else 128, ("occlusion", "vgg16_64"): 4 if args.quick else 8}
    rows = {}
    for job in ("mining", "occlusion"):
        for processes in (1, 2):
            rows[job, "mnist_cnn", processes] = run(job, "mnist_cnn", processes, counts[job, "mnist_cnn"])
        rows[job, "vgg16_64", 1] = run(job, "vgg16_64", 1, counts[job, "vgg16_64"])
    after = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()

    print(f"load before: {load}\nload after:  {after}\n")
    print("| job | network | processes (1 core each) | images | seconds | images/s | speed-up | "
          "all-gathered bytes / image | result bytes / image (shared disk) |")
    print("|---|---|--:|--:|--:|--:|--:|--:|--:|")
    for (job, name, processes), r in rows.items():
        rate = r["images"] / r["seconds"]
        one = rows[job, name, 1]
        speedup = rate / (one["images"] / one["seconds"])
        print(f"| {'top-9 mining' if job == 'mining' else 'occlusion'} | {name} | {processes} | {r['images']} | "
              f"{r['seconds']:.2f} | {rate:.1f} | {speedup:.2f}x | {r['gathered_bytes'] / r['images']:.1f} | "
              f"{r['result_bytes'] / r['images']:.0f} |")

    # the projection: vgg16 at 224, per-image cost scaled from 64 by XLA's flop count
    ratio = {job: flops("vgg16", IMAGENET["size"], job == "mining") / flops("vgg16", 64, job == "mining")
             for job in ("mining", "occlusion")}
    moved = positions(IMAGENET["size"], IMAGENET["patch"], IMAGENET["stride"]) / positions(
        64, NETWORKS["vgg16_64"]["patch"], NETWORKS["vgg16_64"]["stride"])
    efficiency = {job: (rows[job, "mnist_cnn", 2]["images"] / rows[job, "mnist_cnn", 2]["seconds"])
                  / (2 * rows[job, "mnist_cnn", 1]["images"] / rows[job, "mnist_cnn", 1]["seconds"])
                  for job in ("mining", "occlusion")}
    per_image = {job: rows[job, "vgg16_64", 1]["seconds"] / rows[job, "vgg16_64", 1]["images"] * ratio[job]
                 * (moved if job == "occlusion" else 1) for job in ("mining", "occlusion")}
    vgg = models.build("vgg16")
    exchanged = sum(16 * vgg.shapes[n][-1] * 9 for n in report.spatial_layers(vgg))
    print(f"\nProjection for ImageNet's {IMAGENET['images']:,} validation images, vgg16 at 224x224, one process of "
          "one core like this one per host:")
    print(f"- per-image cost: vgg16 at 64x64 measured above, times XLA's flop count of one forward pass at 224 "
          f"over 64 ({ratio['mining']:.1f} to the last pool for mining, {ratio['occlusion']:.1f} to the logits for "
          f"occlusion); occlusion also times {moved:.1f} (a {IMAGENET['patch']}x{IMAGENET['patch']} "
          f"occluder at stride {IMAGENET['stride']}: {positions(224, 32, 8)} positions, over "
          f"{positions(64, 16, 8)} at 64), assuming a position's incremental cost scales like the forward pass")
    print(f"- parallel efficiency as measured with mnist_cnn from 1 to 2 processes (mining {efficiency['mining']:.2f}, "
          "occlusion {:.2f}), assumed to hold at 8 and 64 hosts".format(efficiency["occlusion"]))
    print(f"- exchange: top-9 of every ReLU and pool map, {exchanged / 1e6:.2f} MB a process, all-gathered by every "
          f"host at {BANDWIDTH / 1e9:g} GB/s; occlusion results go to a shared disk as they are written (not timed)")
    print("- data loading (JPEG decoding) and the projections of the sheets are left out\n")
    print("| job | hosts | images a host | projected time |")
    print("|---|--:|--:|--:|")
    for job in ("mining", "occlusion"):
        for hosts in (8, 64):
            each = -(-IMAGENET["images"] // hosts)
            seconds = each * per_image[job] / min(1.0, efficiency[job])
            if job == "mining":
                seconds += hosts * exchanged / BANDWIDTH
            print(f"| {'top-9 mining' if job == 'mining' else 'occlusion'} | {hosts} | {each:,} | "
                  f"{seconds / 3600:.2f} h ({seconds:,.0f} s) |")


if __name__ == "__main__":
    main()
