"""Occlusion throughput: full re-inference, incremental (Krypton), approximate, and Captum's Occlusion.

    python scripts/bench_occlusion.py            # the README table (about 20 minutes on 2 cores)
    python scripts/bench_occlusion.py --quick    # a short run (a few minutes)

Both sides use the same weights: the same network as a torch module
(:func:`jaxvis.weights.torch_module`), on the GPU when torch sees one (``--torch-device``). Captum runs
``Occlusion`` on ``softmax(net(x))`` with the true class as target, zero baselines (the
dataset mean, as the sweep's fill) and the ``perturbations_per_eval`` (and images per
call) that ran fastest in a short trial. Its attributions are checked against the
sweep's. JAX rates leave out compilation (the durations JAX reports as compiling).

(a) vgg16 at 224x224 with a 16x16 occluder, random He-normal weights (``model.init``;
no pretrained file is needed), MNIST digits scaled up to 224 as the images (one, or
``--vgg-images``), their predicted classes as the targets. Captum and full re-inference run a stride-16 grid (196
positions; Captum allows no stride larger than the occluder), the others stride 8 (729
positions): a position costs the same whatever the stride. (b) mnist_cnn
(checkpoints/mnist_cnn, random weights if absent) over the 1,000 bundled test digits,
4x4 occluder at stride 1 (625 positions each); full and Captum on the first 100 digits
(``--mnist-subset``).
Approximations are judged by SSIM against the exact maps of the same grid, and their
rate counts the grid's positions, of which they run fewer. ``--quick`` times Captum on
32 positions only, full re-inference on a stride-64 grid, and 64 digits.

Both sides compute in float32 (TF32 is switched off on GPUs). Prints a markdown table, and the machine's load before and after (``uptime``).
"""

import argparse
import os
import platform
import subprocess
import time
from contextlib import contextmanager
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from jaxvis import checkpoint, data, models, occlusion, weights

ROOT = Path(__file__).resolve().parent.parent
PATCH_VGG, PATCH_MNIST = 16, 4


@contextmanager
def compile_time():
    """Seconds JAX spent tracing, lowering and compiling inside the block: ``[total]``."""
    spent = [0.0]

    def listen(event, duration, **_):
        if event.startswith("/jax/core/compile/"):
            spent[0] += duration

    jax.monitoring.register_event_duration_secs_listener(listen)
    try:
        yield spent
    finally:
        jax.monitoring.unregister_event_duration_listener(listen)


class _Enough(Exception):
    """Raised from inside Captum's forward function to end a timing run early."""


def captum_rate(net, x_NHWC, labels, patch, stride, trials, trial_positions, limit=None):
    """Captum's positions/second with the fastest of ``trials`` (images per call,
    perturbations_per_eval), each timed over its first ``trial_positions`` positions.

    Returns the rate, the seconds timed, the setting, and the attributions ``(N, H, W)``;
    with ``limit``, the run stops after that many positions and gives no attributions
    (its rate counts from the end of Captum's unoccluded pass to the last batch).
    """
    import torch
    from captum.attr import Occlusion

    device = next(net.parameters()).device
    x = torch.tensor(np.transpose(np.asarray(x_NHWC), (0, 3, 1, 2)), device=device)
    target = torch.tensor(np.asarray(labels, np.int64), device=device)
    calls, stop = [], [None]

    def forward(v):
        out = torch.softmax(net(v), -1)
        if device.type == "cuda":
            torch.cuda.synchronize()
        calls.append((time.perf_counter(), len(v)))
        if stop[0] is not None and sum(n for _, n in calls[1:]) >= stop[0]:
            raise _Enough
        return out

    occ = Occlusion(forward)
    c = x.shape[1]

    def run(images, per_eval, positions):
        calls.clear()
        stop[0] = positions
        parts = []
        try:
            with torch.no_grad():
                for lo in range(0, len(x), images):
                    parts.append(occ.attribute(x[lo:lo + images], (c, patch, patch), strides=(c, stride, stride),
                                               target=target[lo:lo + images], perturbations_per_eval=per_eval))
        except _Enough:
            return None
        return torch.cat(parts)[:, 0].cpu().numpy()

    def timed_rate():
        return sum(n for _, n in calls[1:]) / (calls[-1][0] - calls[0][0])

    timings = {}
    for images, per_eval in trials:
        run(images, per_eval, trial_positions)
        timings[(images, per_eval)] = timed_rate()
    setting = max(timings, key=timings.get)
    start = time.perf_counter()
    attribution = run(*setting, limit)
    if attribution is None:
        return timed_rate(), calls[-1][0] - calls[0][0], setting, None
    seconds = time.perf_counter() - start
    count = len(occlusion.positions(x.shape[2], patch, stride)) * len(occlusion.positions(x.shape[3], patch, stride))
    return len(x) * count / seconds, seconds, setting, attribution


def jax_rate(budget, model, params, x, labels, patch, stride, **kwargs):
    """Grid positions/second of one sweep (compilation left out), its seconds and its maps."""
    with compile_time() as compiling:
        start = time.perf_counter()
        maps = occlusion.sweep(model, params, x, labels, patch, stride, memory_budget=budget, **kwargs)
        seconds = time.perf_counter() - start - compiling[0]
    return maps.prob_NPQ.size / seconds, seconds, maps


def uptime() -> str:
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    except OSError:
        return "uptime unavailable"


def table_rows(case, results, captum, full):
    """Markdown rows; a rate counts the grid's positions (an approximation runs fewer)."""
    rows = []
    for name, (rate, seconds, count, grid, ssim) in results.items():
        rows.append(f"| {case} | {name} | {grid} | {count} | {seconds:.1f} | {rate:.2f} | {rate / captum:.1f}x "
                    f"| {rate / full:.1f}x | {'' if ssim is None else f'{ssim:.3f}'} |")
    return rows


def approximate(results, name, rate_seconds_maps, exact, grid):
    """Record an approximation: its rate over the whole grid and its SSIM against the exact maps."""
    rate, seconds, maps = rate_seconds_maps
    similarity = float(occlusion.ssim(maps.prob_NPQ, exact.prob_NPQ).mean())
    label = f"{name} ({int(maps.computed_NPQ.sum())} run)" if not maps.computed_NPQ.all() else name
    results[label] = (rate, seconds, maps.prob_NPQ.size, grid, similarity)


def bench_vgg16(quick: bool, digits_NHW, device: str, budget: float):
    model = models.build("vgg16")
    params = model.init(jax.random.key(0))
    n = len(digits_NHW)
    pixels = np.asarray(jax.image.resize(jnp.asarray(digits_NHW, jnp.float32) / 255, (n, 224, 224), "linear"))
    x = np.asarray(model.normalize(np.repeat(pixels[..., None], 3, axis=-1)), np.float32)
    label = np.asarray(jnp.argmax(jax.jit(lambda v: model.apply(params, v)[0])(x), -1))
    coarse, fine = 16, 16 if quick else 8  # Captum allows no stride larger than the occluder
    n_coarse = n * len(occlusion.positions(224, PATCH_VGG, coarse)) ** 2
    n_fine = n * len(occlusion.positions(224, PATCH_VGG, fine)) ** 2
    results = {}
    net = weights.torch_module(model, params).to(device)
    trials = [(1, 4)] if quick else [(1, 2), (1, 4), (1, 8), (1, 16)]
    c_rate, c_seconds, setting, attribution = captum_rate(net, x, label, PATCH_VGG, coarse, trials, 32,
                                                          limit=32 if quick else None)
    results[f"Captum Occlusion (ppe {setting[1]})"] = (c_rate, c_seconds, 32 if quick else n_coarse,
                                                       f"stride {coarse}", None)
    if quick:
        rate, seconds, full_maps = jax_rate(budget, model, params, x, label, PATCH_VGG, 64)
        results["full re-inference"] = (rate, seconds, 25 * n, "stride 64", None)
    else:
        rate, seconds, full_maps = jax_rate(budget, model, params, x, label, PATCH_VGG, coarse)
        results["full re-inference"] = (rate, seconds, n_coarse, f"stride {coarse}", None)
    full_rate = rate
    rate, seconds, exact = jax_rate(budget, model, params, x, label, PATCH_VGG, fine, method="incremental")
    results["incremental, exact"] = (rate, seconds, n_fine, f"stride {fine}", None)
    for name, kwargs in [("approximate: tau 0.5", dict(tau=0.5)), ("approximate: tau 0.4", dict(tau=0.4)),
                         (f"approximate: drill-down {2 * fine}->{fine}, r 0.25", dict(coarse_stride=2 * fine)),
                         (f"approximate: tau 0.5 + drill-down {2 * fine}->{fine}, r 0.25",
                          dict(tau=0.5, coarse_stride=2 * fine))]:
        approximate(results, name, jax_rate(budget, model, params, x, label, PATCH_VGG, fine, method="incremental", **kwargs),
                    exact, f"stride {fine}")
    check = "not checked (--quick)" if attribution is None else "max |diff| / max = {:.1e}".format(
        float(np.abs(attribution - full_maps.attribution_NHW).max() / np.abs(full_maps.attribution_NHW).max()))
    rows = table_rows(f"vgg16 224, 16x16, {n} image{'s' * (n > 1)}", results, c_rate, full_rate)
    return rows, f"vgg16: Captum's attribution vs the sweep's (full, stride {coarse}): {check}"


def bench_mnist(quick: bool, images, labels, device: str, budget: float, subset: int):
    path = ROOT / "checkpoints" / "mnist_cnn"
    if (path / "card.json").exists():
        model, params, _ = checkpoint.restore_model(path)
        source = str(path.relative_to(ROOT))
    else:
        model = models.build("mnist_cnn")
        params, source = model.init(jax.random.key(0)), "random weights (no checkpoints/mnist_cnn)"
    x = np.asarray(model.normalize(images), np.float32)
    n_all, n_some = (64, 16) if quick else (len(x), subset)
    per_image = len(occlusion.positions(28, PATCH_MNIST, 1)) ** 2
    results = {}
    rate, seconds, full_maps = jax_rate(budget, model, params, x[:n_some], labels[:n_some], PATCH_MNIST, 1)
    results["full re-inference"] = (rate, seconds, n_some * per_image, f"stride 1, {n_some} digits", None)
    full_rate = rate
    net = weights.torch_module(model, params).to(device)
    trials = [(1, 625), (4, 128)] if quick else [(1, 625), (4, 128), (8, 64), (16, 32), (16, 625)]
    c_rate, c_seconds, setting, attribution = captum_rate(net, x[:n_some], labels[:n_some], PATCH_MNIST, 1, trials,
                                                          4 * per_image)
    check = float(np.abs(attribution - full_maps.attribution_NHW).max() / np.abs(full_maps.attribution_NHW).max())
    results[f"Captum Occlusion ({setting[0]} digits x ppe {setting[1]})"] = (
        c_rate, c_seconds, n_some * per_image, f"stride 1, {n_some} digits", None)
    rate, seconds, exact = jax_rate(budget, model, params, x[:n_all], labels[:n_all], PATCH_MNIST, 1, method="incremental")
    results["incremental, exact"] = (rate, seconds, n_all * per_image, f"stride 1, {n_all} digits", None)
    for name, kwargs in [("approximate: tau 0.5", dict(tau=0.5)),
                         ("approximate: drill-down 2->1, r 0.25", dict(coarse_stride=2)),
                         ("approximate: drill-down 4->1, r 0.25", dict(coarse_stride=4)),
                         ("approximate: tau 0.5 + drill-down 4->1, r 0.25", dict(tau=0.5, coarse_stride=4)),
                         ("approximate: tau 0.5 + drill-down 4->1, r 0.1",
                          dict(tau=0.5, coarse_stride=4, drill_fraction=0.1)),
                         ("approximate: tau 0.4 + drill-down 4->1, r 0.12",
                          dict(tau=0.4, coarse_stride=4, drill_fraction=0.12))]:
        approximate(results, name, jax_rate(budget, model, params, x[:n_all], labels[:n_all], PATCH_MNIST, 1,
                                            method="incremental", **kwargs), exact, f"stride 1, {n_all} digits")
    rows = table_rows("mnist_cnn 28, 4x4", results, c_rate, full_rate)
    return rows, (f"mnist_cnn ({source}): Captum's attribution vs the sweep's (full): "
                  f"max |diff| / max = {check:.1e}")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer positions and digits, one Captum setting")
    parser.add_argument("--only", choices=("vgg16", "mnist"), help="run one case")
    parser.add_argument("--vgg-images", type=int, default=1, help="digits (scaled to 224) in the vgg16 case")
    parser.add_argument("--mnist-subset", type=int, default=100,
                        help="digits that full re-inference and Captum run in the mnist case")
    parser.add_argument("--memory-budget", type=float, default=2e9,
                        help="the sweeps' memory budget in bytes (more positions per call)")
    parser.add_argument("--torch-device", help="where Captum runs (default: cuda when torch sees a GPU, else cpu)")
    args = parser.parse_args(argv)
    import torch

    jax.config.update("jax_default_matmul_precision", "highest")  # float32 on both sides: no TF32 on GPUs
    torch.backends.cudnn.allow_tf32 = False

    device = args.torch_device or ("cuda" if torch.cuda.is_available() else "cpu")

    print(f"{platform.machine()}, {os.cpu_count()} cores, jax {jax.__version__} ({jax.devices()[0].platform}), "
          f"torch {torch.__version__} ({device}, {torch.get_num_threads()} threads)")
    print(f"load before: {uptime()}")
    sample = data.open_dataset("mnist_sample", "test")
    images, labels = next(iter(sample.batches(sample.num_examples)))
    rows, notes = [], []
    if args.only in (None, "vgg16"):
        case_rows, note = bench_vgg16(args.quick, images[:args.vgg_images, :, :, 0], device, args.memory_budget)
        rows += case_rows
        notes.append(note)
    if args.only in (None, "mnist"):
        case_rows, note = bench_mnist(args.quick, images, labels, device, args.memory_budget, args.mnist_subset)
        rows += case_rows
        notes.append(note)
    print_table(rows, notes)


def print_table(rows: list[str], notes: list[str]) -> None:
    """The machine's load, then the markdown table of ``rows`` and the ``notes`` below it."""
    print(f"load after: {uptime()}\n")
    print("| case | method | grid | positions | seconds | positions/s | vs Captum | vs full | SSIM vs exact |")
    print("|---|---|---|---|---|---|---|---|---|")
    print("\n".join(rows))
    print()
    print("\n".join(notes))


if __name__ == "__main__":
    main()
