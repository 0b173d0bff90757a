"""Grad-CAM and guided Grad-CAM against Captum's ``LayerGradCam`` and ``GuidedGradCam`` on
the PyTorch twin of VGG-16 (:func:`jaxvis.weights.torch_module`, random weights), and
:func:`jaxvis.saliency.interpolate` against ``torch.nn.functional.interpolate``.

Captum gets one call per class (a ``(N,)`` target per call); jaxvis one call for all.
Errors are max |difference| / max |Captum|; run with ``-s`` to see them.
"""

import time

import jax
import numpy as np
import pytest

import captum.attr as captum_attr
import torch
import torch.nn.functional as F
from conftest import rel_err as rel
from test_torch import _threads  # noqa: F401  (autouse: torch on 2 threads, as in test_torch)

from jaxvis import models, saliency, weights

TOL = 1e-4


def vgg16(input_size: int, images: int):
    """(model, params, torch twin, images NHWC, the 3 top-scoring classes of each image)."""
    model = models.build("vgg16", input_size=input_size)
    params = model.init(jax.random.key(0))
    x = np.random.default_rng(input_size).normal(size=(images, *model.input_shape)).astype(np.float32)
    top_NK = np.argsort(-np.asarray(model.apply(params, x)[0]), axis=1)[:, :3]
    return model, params, weights.torch_module(model, params), x, top_NK


@pytest.fixture(scope="module")
def small():
    return vgg16(64, 2)


def torch_input(x_NHWC):
    return torch.from_numpy(x_NHWC.transpose(0, 3, 1, 2).copy()).requires_grad_()


def captum_grad_cam(model, net, x_NHWC, classes_NK, layer, upsample):
    """``(N, K, h, w)`` from one ``LayerGradCam`` call per class column."""
    cam = captum_attr.LayerGradCam(net, net.features[model.names.index(layer)])
    maps = []
    for k in range(classes_NK.shape[1]):
        attr = cam.attribute(torch_input(x_NHWC), target=classes_NK[:, k].tolist(), relu_attributions=True)
        if upsample is not None:
            attr = captum_attr.LayerAttribution.interpolate(attr, x_NHWC.shape[1:3], upsample)
        maps.append(attr.detach().numpy()[:, 0])
    return np.stack(maps, axis=1)


def captum_guided_grad_cam(model, net, x_NHWC, classes_NK, layer, upsample):
    """``(N, K, H, W, C)`` from one ``GuidedGradCam`` call per class column."""
    guided = captum_attr.GuidedGradCam(net, net.features[model.names.index(layer)])
    return np.stack([guided.attribute(torch_input(x_NHWC), target=classes_NK[:, k].tolist(),
                                      interpolate_mode=upsample).detach().numpy().transpose(0, 2, 3, 1)
                     for k in range(classes_NK.shape[1])], axis=1)


@pytest.mark.parametrize("layer, upsample", [("relu5_3", None), ("relu5_3", "bilinear"), ("conv5_3", "nearest"),
                                             ("relu4_3", "bilinear"), ("pool5", None)])
def test_grad_cam_matches_layer_grad_cam(small, layer, upsample):
    model, params, net, x, top_NK = small
    t0 = time.perf_counter()
    ours = saliency.grad_cam(model, params, x, top_NK, layer=layer, upsample=upsample)
    expected = captum_grad_cam(model, net, x, top_NK, layer, upsample)
    err = rel(ours, expected)
    print(f"\n[vgg16 64x64] Grad-CAM at {layer}, upsample {upsample}: max rel diff {err:.2e}, positive "
          f"{np.count_nonzero(expected)}/{expected.size} ({time.perf_counter() - t0:.1f} s)")
    assert ours.shape == expected.shape
    assert np.count_nonzero(expected) > expected.size // 10  # not trivially zero after the ReLU
    assert err < TOL


@pytest.mark.filterwarnings("ignore:Setting backward hooks on ReLU")
@pytest.mark.parametrize("upsample", ["bilinear", "nearest"])
def test_guided_grad_cam_matches_captum(small, upsample):
    model, params, net, x, top_NK = small
    t0 = time.perf_counter()
    ours = saliency.guided_grad_cam(model, params, x, top_NK, upsample=upsample)
    expected = captum_guided_grad_cam(model, net, x, top_NK, "relu5_3", upsample)
    err = rel(ours, expected)
    print(f"\n[vgg16 64x64] guided Grad-CAM, upsample {upsample}: max rel diff {err:.2e}, nonzero "
          f"{np.count_nonzero(expected)}/{expected.size} ({time.perf_counter() - t0:.1f} s)")
    assert np.count_nonzero(expected) > expected.size // 10
    assert err < TOL


@pytest.mark.parametrize("mode", ["bilinear", "nearest"])
@pytest.mark.parametrize("size_in, size_out", [((4, 4), (64, 64)), ((5, 7), (88, 61)), ((7, 5), (11, 9))])
def test_interpolate_matches_torch(mode, size_in, size_out):
    maps = np.random.default_rng(3).normal(size=(2, 3, *size_in)).astype(np.float32)
    expected = F.interpolate(torch.from_numpy(maps), size_out, mode=mode).numpy()
    err = rel(saliency.interpolate(maps, size_out, mode), expected)
    print(f"\ninterpolate {size_in} -> {size_out} ({mode}): max rel diff {err:.2e}")
    assert err < 1e-6


def test_all_classes_at_224_in_chunks_match_layer_grad_cam():
    # Guided Grad-CAM is compared at 64x64 only: at 224x224 in float32, jaxvis's and Captum's
    # guided backpropagation differ by 2e-3 (max rel) on 0.4% of the pixels, where float noise
    # switches a ReLU's [f > 0] gate; in float64 the two guided Grad-CAMs agree to 3e-15.
    t0 = time.perf_counter()
    model, params, net, x, top_NK = vgg16(224, 1)
    cams = saliency.grad_cam(model, params, x, "all", memory_budget=1e8)  # 140 classes a chunk, 8 chunks
    classes_NK = top_NK[:, :2]
    ours = saliency.interpolate(cams[:, classes_NK[0]], x.shape[1:3])
    expected = captum_grad_cam(model, net, x, classes_NK, "relu5_3", "bilinear")
    err = rel(ours, expected)
    print(f"\n[vgg16 224x224] Grad-CAM of all classes, 2 against Captum: max rel diff {err:.2e} "
          f"({time.perf_counter() - t0:.1f} s)")
    assert cams.shape == (1, 1000, 14, 14)
    assert np.count_nonzero(expected) > expected.size // 10
    assert err < TOL
