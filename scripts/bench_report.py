"""The report's default sections on one 224x224 photo, jaxvis against the same with Captum.

    python scripts/bench_report.py                 # vgg16, random weights, one bundled photo
    python scripts/bench_report.py --photo cat.jpg --repeats 3

Both sides run the computations of scripts/explain.py's default report on vgg16 with the
same random He-normal weights (``model.init``; Captum gets them through
:func:`jaxvis.weights.torch_module`), in float32 on the CPU, torch on as many threads as
JAX has cores:

- predictions: softmax of one forward pass;
- projections: the strongest unit of the strongest map of each of the 18 conv (rectified)
  and pool layers, projected alone with the deconvnet rule (Captum: ``NeuronDeconvolution``
  on the same unit, one call per layer);
- transforms: the 9 variants' predictions and their projections at the three deepest
  layers (Captum: one forward of the 9, ``NeuronDeconvolution`` per variant and layer);
- occlusion: a 32x32 occluder at stride 16 (169 positions), the predicted class's
  probability, with the feature totals and projection of Fig. 7 on the jaxvis side
  (Captum: ``Occlusion`` on ``softmax(net(x))`` alone, ``perturbations_per_eval`` 16);
- saliency: gradient saliency, guided backpropagation, Grad-CAM and guided Grad-CAM of
  the predicted class (Captum: ``Saliency``, ``GuidedBackprop``, ``LayerGradCam`` with
  bilinear upsampling, ``GuidedGradCam``).

The predicted class comes from the predictions section on both sides, as in the report,
so the occlusion and saliency sections do not pay a forward pass for it.

jaxvis's first run includes compiling (once per process, whatever the number of photos);
its later runs, the steady state, are what the goals compare: the whole report at least
5x faster than Captum's, occlusion at least 8x. Figures (matplotlib) are left out of both
sides, and timed apart: ``report.write`` on the photo, figures and page included. Prints a
markdown table and the machine's load (``uptime``) before and after.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import tempfile
import time

import jax
import jax.numpy as jnp
import numpy as np

from jaxvis import figures, images, occlusion, report, saliency, weights
from jaxvis.project import project_strongest

SECTIONS = report.DEFAULT_SECTIONS
GOALS = {"occlusion": 8.0, "all": 5.0}


def jaxvis_sections(net: report.Network, settings: report.Settings, x_1HWC) -> dict:
    """Each default section's computation (as :mod:`jaxvis.report` runs it): ``{section: thunk}``."""
    model, params = net.model, net.params
    layers, deepest = report.spatial_layers(model), report.spatial_layers(model)[-3:]
    label = int(np.argmax(report.probabilities(model, params, x_1HWC)[0]))  # the report's, from its predictions
    fig7_layer = figures.last_spatial_relu(model)

    def transforms():
        _, x_VHWC = report.transformed(model, x_1HWC[0])
        return report.probabilities(model, params, x_VHWC), report.strongest_projections(
            model, params, x_VHWC, deepest, settings.rule)

    def occluded():
        maps = occlusion.sweep(model, params, x_1HWC, [label], settings.patch, settings.stride, layer=fig7_layer,
                               method=settings.occlusion_method)
        return maps, project_strongest(model, params, x_1HWC, fig7_layer)

    def maps():
        c = label
        return (saliency.saliency(model, params, x_1HWC, c), saliency.gradients(model, params, x_1HWC, c, "guided"),
                saliency.grad_cam(model, params, x_1HWC, c, upsample="bilinear"),
                saliency.guided_grad_cam(model, params, x_1HWC, c))

    return {"predictions": lambda: report.probabilities(model, params, x_1HWC),
            "projections": lambda: report.strongest_projections(model, params, x_1HWC, layers, settings.rule),
            "transforms": transforms, "occlusion": occluded, "saliency": maps}


def captum_sections(net: report.Network, settings: report.Settings, x_1HWC) -> dict:
    """The same computations with Captum on the torch twin: ``{section: thunk}``."""
    import torch
    from captum.attr import GuidedBackprop, GuidedGradCam, LayerAttribution, LayerGradCam, NeuronDeconvolution
    from captum.attr import Occlusion, Saliency

    model = net.model
    torch_net = weights.torch_module(model, net.params)
    modules = dict(zip(model.fields, torch_net.features))  # the sliding-window layers, in order
    to_torch = lambda x: torch.tensor(np.asarray(x).transpose(0, 3, 1, 2).copy())  # noqa: E731
    x = to_torch(x_1HWC)
    layers, deepest = report.spatial_layers(model), report.spatial_layers(model)[-3:]
    cam_module = modules[saliency.cam_layer(model)]

    with torch.no_grad():
        label = int(torch.softmax(torch_net(x), -1)[0].argmax())  # as on the jaxvis side: from the predictions

    def strongest_units(inputs, names):
        """Per layer the (map, row, col) of the strongest unit of its strongest map (one forward)."""
        found = {}
        hooks = [modules[n].register_forward_hook(lambda m, i, o, n=n: found.__setitem__(n, o.detach()))
                 for n in names]
        with torch.no_grad():
            torch_net(inputs)
        for h in hooks:
            h.remove()
        units = {}
        for n in names:
            act = found[n][0]
            c = int(act.amax(dim=(1, 2)).argmax())
            i, j = divmod(int(act[c].argmax()), act.shape[2])
            units[n] = (c, i, j)
        return units

    def deconvnet(inputs, names):
        units = strongest_units(inputs, names)
        return [NeuronDeconvolution(torch_net, modules[n]).attribute(inputs, neuron_selector=units[n]) for n in names]

    def transforms():
        _, x_VHWC = report.transformed(model, x_1HWC[0])
        variants = to_torch(x_VHWC)
        with torch.no_grad():
            probs = torch.softmax(torch_net(variants), -1)
        return probs, [deconvnet(variants[v:v + 1], deepest) for v in range(len(variants))]

    def occluded():
        forward = lambda inputs: torch.softmax(torch_net(inputs), -1)  # noqa: E731
        c = model.input_shape[2]
        attribution = Occlusion(forward).attribute(
            x, sliding_window_shapes=(c, settings.patch, settings.patch), strides=(c, settings.stride, settings.stride),
            baselines=0.0, target=label, perturbations_per_eval=16)
        return attribution

    def maps():
        c = label
        cam = LayerGradCam(torch_net, cam_module).attribute(x, target=c, relu_attributions=True)
        return (Saliency(torch_net).attribute(x, target=c), GuidedBackprop(torch_net).attribute(x, target=c),
                LayerAttribution.interpolate(cam, x.shape[2:], "bilinear"),
                GuidedGradCam(torch_net, cam_module).attribute(x, target=c))

    def predictions():
        with torch.no_grad():
            return torch.softmax(torch_net(x), -1)

    return {"predictions": predictions, "projections": lambda: deconvnet(x, layers), "transforms": transforms,
            "occlusion": occluded, "saliency": maps}


def timed(thunk) -> float:
    start = time.perf_counter()
    jax.block_until_ready(thunk())
    return time.perf_counter() - start


def row(section: str, first: float, warm: float, captum: float) -> str:
    goal = f"{GOALS[section]:.0f}x" if section in GOALS else ""
    return f"| {section} | {first:.1f} | {warm:.2f} | {captum:.2f} | **{captum / warm:.1f}x** | {goal} |"


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--photo", default=str(images.SAMPLE_PHOTOS / "chelsea.jpg"))
    parser.add_argument("--repeats", type=int, default=2, help="steady-state runs per side (the fastest counts)")
    args = parser.parse_args(argv)
    import torch

    torch.set_num_threads(os.cpu_count())
    print(f"load before: {subprocess.run(['uptime'], capture_output=True, text=True).stdout.strip()}")
    net = report.random_network("vgg16")
    settings = report.Settings()
    photo = images.load([args.photo], "torchvision", size=net.model.input_shape[:2])
    x_1HWC = jnp.asarray(net.model.normalize(photo.pixels_NHWC))
    ours, theirs = jaxvis_sections(net, settings, x_1HWC), captum_sections(net, settings, x_1HWC)

    print(f"\nvgg16 (random weights), one {net.model.input_shape[0]}x{net.model.input_shape[1]} photo, "
          f"{os.cpu_count()} cores, {args.repeats} steady run(s) per side (fastest), jax {jax.__version__}, "
          f"torch {torch.__version__}\n")
    print("| section | jaxvis first run s (compile incl.) | jaxvis s | Captum s | Captum / jaxvis | goal |")
    print("|---|--:|--:|--:|--:|--:|")
    first, warm, captum = {}, {}, {}
    for s in SECTIONS:  # each row as soon as it is measured
        first[s] = timed(ours[s])
        warm[s] = min(timed(ours[s]) for _ in range(args.repeats))
        captum[s] = min(timed(theirs[s]) for _ in range(args.repeats))
        print(row(s, first[s], warm[s], captum[s]))
    print(row("all", *(sum(d.values()) for d in (first, warm, captum))))
    with tempfile.TemporaryDirectory() as out:
        start = time.perf_counter()
        report.write(net, photo.pixels_NHWC, [str(p) for p in photo.paths], out, settings, progress=False)
        page = time.perf_counter() - start
    print(f"\nreport.write on the photo after the runs above (figures and page, compiled): {page:.1f} s")
    print(f"load after: {subprocess.run(['uptime'], capture_output=True, text=True).stdout.strip()}")


if __name__ == "__main__":
    main()
