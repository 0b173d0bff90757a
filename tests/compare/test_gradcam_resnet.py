"""Grad-CAM and guided Grad-CAM of ResNet-18 and ResNet-50 against Captum's ``LayerGradCam``
and ``GuidedGradCam`` on their PyTorch twins (:func:`jaxvis.weights.torch_module`, random
weights and batch-norm statistics, eval mode), in float64 as the projections of
``test_resnet_captum`` (the same fixture).

The layers are the last block's output in ``layer3`` and in ``layer4``, after the addition
and its ReLU: the twin's module of that name (``layer4.1.relu``) returns what
torchvision's ``model.layer4[-1]`` returns, the layer Grad-CAM users take on torchvision
ResNets and :func:`jaxvis.saliency.cam_layer`'s default. The gradient reaches a block's
output through the next block's convolutions and its shortcut; jaxvis takes it with one
``vjp`` of a zero delta added there (``apply``'s ``at``). Errors are max |difference| /
max |Captum|, within 1e-4.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import captum.attr as captum_attr
import torch
from conftest import rel_err as rel
from test_resnet_captum import TOL, UNITS, resnet  # noqa: F401  (resnet: the shared fixture)
from test_torch import _threads  # noqa: F401  (autouse: torch on 2 threads, as in test_torch)

from jaxvis import saliency


@pytest.mark.filterwarnings("ignore:Setting backward hooks on ReLU")
@pytest.mark.parametrize("stage", [0, 1], ids=["layer3", "layer4"])
def test_grad_cam_and_guided_grad_cam_equal_captums(resnet, stage):  # noqa: F811
    model, params, twin, x_NHWC = resnet
    layer = UNITS[model.name][stage]
    if stage == 1:
        assert saliency.cam_layer(model) == layer
    with jax.enable_x64(True):
        x = jnp.asarray(x_NHWC)
        classes_NK = np.argsort(-np.asarray(model.apply(params, x)[0]), axis=1)[:, :3]
        cam = np.asarray(saliency.grad_cam(model, params, x, classes_NK, layer=layer))
        guided = np.asarray(saliency.guided_grad_cam(model, params, x, classes_NK, layer=layer, upsample="nearest"))
    x_torch = torch.from_numpy(x_NHWC.transpose(0, 3, 1, 2).copy())
    module = twin.get_submodule(layer)
    want_cam, want_guided = [], []
    for c in classes_NK[0]:
        want_cam.append(captum_attr.LayerGradCam(twin, module).attribute(
            x_torch.clone().requires_grad_(), target=int(c), relu_attributions=True).detach().numpy()[0, 0])
        want_guided.append(captum_attr.GuidedGradCam(twin, module).attribute(
            x_torch.clone().requires_grad_(), target=int(c)).detach().numpy()[0].transpose(1, 2, 0))
    want_cam, want_guided = np.stack(want_cam), np.stack(want_guided)
    errors = {"Grad-CAM": rel(cam[0], want_cam), "guided Grad-CAM": rel(guided[0], want_guided)}
    print(f"\n{model.name} float64 {layer}, classes {classes_NK[0].tolist()}: "
          + ", ".join(f"{k} {v:.1e}" for k, v in errors.items()))
    assert want_cam.max() > 0 and np.abs(want_guided).max() > 0
    assert cam.dtype == np.float64 and max(errors.values()) < TOL, errors
