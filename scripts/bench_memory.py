"""Peak memory of occlusion sweeps against their memory budget, and their speed.

    python scripts/bench_memory.py                      # vgg16 at 224, 16x16 stride 16, one image (minutes)
    python scripts/bench_memory.py --compare /tmp/old_occlusion.py   # the same with another occlusion.py beside

Each method (full, incremental exact, tau 0.5, drill-down from twice the stride) runs at
every budget in a fresh process. There the model, its random weights (``model.init``) and
the images are made and one forward pass runs; then the sweep runs once, compiling its
calls, and again. Before each run the memory the allocator holds free goes back to the
system (``malloc_trim``) and the peak resident set is reset (``/proc/self/clear_refs``);
a run's growth is its peak (``VmHWM``) less the resident set just before it. Allocations
of 64 KiB and more are mapped afresh (``MALLOC_MMAP_THRESHOLD_``), so that a large buffer
never hides in heap memory an earlier run freed. The second
run's growth is what ``memory_budget`` bounds (compilation excluded); the first run's,
compilation included, is shown beside it. Rates count the grid's positions per second
of the second run. ``--compare`` runs the same cases with another copy of
``jaxvis/occlusion.py`` (``git show HEAD~1:jaxvis/occlusion.py > /tmp/old_occlusion.py``),
each right after the current one, so that the speeds compare on a busy machine.
Needs Linux (``/proc``) and glibc.
"""

import argparse
import ctypes
import importlib.util
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
METHODS = {"full": {}, "incremental": {"method": "incremental"}, "tau 0.5": {"method": "incremental", "tau": 0.5},
           "drill-down": {"method": "incremental", "coarse_stride": None}}  # None: twice the stride


def _status(key: str) -> int:
    """A ``/proc/self/status`` size in bytes (``VmRSS``, ``VmHWM``)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    raise OSError(f"no {key} in /proc/self/status")


def _fresh_peak() -> int:
    """Give free heap memory back, reset the peak resident set and return the resident set now."""
    import gc

    gc.collect()
    ctypes.CDLL(None).malloc_trim(0)
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    return _status("VmRSS")


def child(case: dict) -> list[dict]:
    """In this process: each method's first and second run at each budget (module docstring)."""
    import jax
    import numpy as np

    from jaxvis import models
    if case.get("module"):
        spec = importlib.util.spec_from_file_location("other_occlusion", case["module"])
        occlusion = sys.modules[spec.name] = importlib.util.module_from_spec(spec)  # dataclasses look it up
        spec.loader.exec_module(occlusion)
    else:
        from jaxvis import occlusion
    overrides = {} if case["input_size"] is None else {"input_size": case["input_size"]}
    model = models.build(case["model"], **overrides)
    params = model.init(jax.random.key(0))
    x = np.asarray(jax.random.normal(jax.random.key(1), (case["images"], *model.input_shape)), np.float32)
    labels = np.arange(case["images"]) % model.num_classes
    jax.block_until_ready(jax.jit(lambda p, v: model.apply(p, v)[0])(params, x))
    results = []
    for method in case["methods"]:
        kwargs = dict(METHODS[method])
        if "coarse_stride" in kwargs:
            kwargs["coarse_stride"] = 2 * case["stride"]
        for budget in case["budgets"]:
            row = {"method": method, "budget": budget}
            try:
                for run in ("first", "second"):
                    calls = []
                    base = _fresh_peak()
                    start = time.perf_counter()
                    maps = occlusion.sweep(model, params, x, labels, case["patch"], case["stride"],
                                           memory_budget=budget, progress=calls.append, **kwargs)
                    row[f"{run}_seconds"] = time.perf_counter() - start
                    row[f"{run}_growth"] = _status("VmHWM") - base
                row |= {"calls": len(calls), "grid": int(maps.prob_NPQ.size), "ran": int(maps.computed_NPQ.sum())}
            except ValueError as err:
                row["refused"] = str(err)
            results.append(row)
    return results


def measure(model: str, input_size: int | None, patch: int, stride: int, methods, budgets, images: int = 1,
            module: str | None = None) -> list[dict]:
    """Rows (see :func:`child`) for each of ``methods`` (names in :data:`METHODS`) at each
    budget, measured in one fresh process."""
    case = dict(model=model, input_size=input_size, patch=patch, stride=stride, methods=list(methods),
                budgets=list(budgets), images=images, module=module)
    # a fixed mmap threshold: glibc otherwise raises it after each large free, so that a
    # later large buffer may reuse freed heap memory that the baseline already counts
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="65536")
    done = subprocess.run([sys.executable, __file__, "--child", json.dumps(case)], capture_output=True, text=True,
                          cwd=ROOT, env=env)
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    if done.returncode or not lines:
        raise RuntimeError(f"the measuring process failed (exit {done.returncode}):\n{done.stderr[-3000:]}")
    return json.loads(lines[-1][len("RESULT "):])


def _cells(row: dict) -> str:
    if "refused" in row:
        return f"refused: needs {row['refused'].split('use at least ')[-1].split()[0]} | | | | |"
    mb = 1e6
    return (f"{row['calls']} | {row['second_growth'] / mb:.0f} | {row['second_growth'] / row['budget']:.2f} | "
            f"{row['first_growth'] / mb:.0f} | {row['grid'] / row['second_seconds']:.1f} |")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--model", default="vgg16")
    parser.add_argument("--input-size", type=int, help="the model's input side (default: the model's own)")
    parser.add_argument("--patch", type=int, default=16)
    parser.add_argument("--stride", type=int, default=16)
    parser.add_argument("--images", type=int, default=1)
    parser.add_argument("--budgets", type=float, nargs="+", default=[2.5e8, 5e8, 1e9, 2e9])
    parser.add_argument("--methods", nargs="+", choices=list(METHODS), default=list(METHODS))
    parser.add_argument("--compare", help="another occlusion.py to measure beside this one")
    args = parser.parse_args(argv)
    if args.child:
        print("RESULT " + json.dumps(child(json.loads(args.child))), flush=True)
        return
    print(f"{args.model} at {args.input_size or 'its own size'}, {args.patch}x{args.patch} stride {args.stride}, "
          f"{args.images} image(s); {os.cpu_count()} cores; load {os.getloadavg()[0]:.1f}")
    head = "| method | budget | calls | growth MB | / budget | first run MB | positions/s |"
    rows = []
    for method in args.methods:
        sides = [measure(args.model, args.input_size, args.patch, args.stride, [method], args.budgets, args.images)]
        if args.compare:
            sides.append(measure(args.model, args.input_size, args.patch, args.stride, [method], args.budgets,
                                 args.images, module=args.compare))
        for i, budget in enumerate(args.budgets):
            rows.append(f"| {method} | {budget:.3g} | " + " ".join(_cells(side[i]) for side in sides))
            print(rows[-1], flush=True)
    print(f"\nload after: {os.getloadavg()[0]:.1f}\n")
    if args.compare:
        head += " calls | growth MB | / budget | first run MB | positions/s (compared) |"
    print(head)
    print("|" + "---|" * (head.count("|") - 1))
    print("\n".join(rows))


if __name__ == "__main__":
    from jaxvis import cli

    cli.run(main)
