"""Grad-CAM and guided Grad-CAM against Captum's ``LayerGradCam`` and ``GuidedGradCam`` on
the PyTorch twin of VGG-16 (:func:`jaxvis.weights.torch_module`, random weights), and
:func:`jaxvis.saliency.interpolate` against ``torch.nn.functional.interpolate``.

Captum gets one call per class (a ``(N,)`` target per call); jaxvis one call for all.
Errors are max |difference| / max |Captum|; run with ``-s`` to see them. Float32 cases
must agree to 1e-4, one float64 case to 1e-10 (see its comment for why both).
"""

import copy
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


@pytest.fixture(scope="module")
def vgg():
    """vgg16's params (``model.init``, key 0) and its torch twin: with the adaptive pool
    before the classifier, both serve every input size."""
    model = models.build("vgg16")
    params = model.init(jax.random.key(0))
    return params, weights.torch_module(model, params)


def vgg16(vgg, input_size: int, images: int, dtype=np.float32):
    """(model, params, torch twin, seeded images NHWC) at ``input_size`` in ``dtype``."""
    params, net = vgg
    model = models.build("vgg16", input_size=input_size)
    x = np.random.default_rng(input_size).normal(size=(images, *model.input_shape)).astype(dtype)
    if dtype == np.float64:
        params, net = jax.tree.map(lambda a: np.asarray(a, np.float64), params), copy.deepcopy(net).double()
    return model, params, net, x


def top_classes(model, params, x_NHWC, k: int = 3):
    """The ``k`` top-scoring classes of each image: their maps are seldom all zero."""
    return np.argsort(-np.asarray(model.apply(params, x_NHWC)[0]), axis=1)[:, :k]


@pytest.fixture(scope="module")
def small(vgg):
    """vgg16 at 64x64 in float32, 2 images and the 3 top-scoring classes of each."""
    model, params, net, x = vgg16(vgg, 64, 2)
    return model, params, net, x, top_classes(model, params, x)


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


@pytest.mark.filterwarnings("ignore:Setting backward hooks on ReLU")
def test_float64_grad_cam_and_guided_grad_cam_equal_captum(vgg):
    # In float32 the two sides agree only up to float noise: where it flips a ReLU gate or a
    # max-pool switch, a map moves by up to 5e-3 (seen with other random weights). In float64
    # nothing flips, and the two implementations must agree to rounding.
    model, params, net, x = vgg16(vgg, 64, 1, np.float64)
    t0 = time.perf_counter()
    with jax.enable_x64(True):
        top_NK = top_classes(model, params, x, k=2)
        cam = saliency.grad_cam(model, params, x, top_NK, layer="relu4_3", upsample="bilinear")
        guided = saliency.guided_grad_cam(model, params, x, top_NK)
    assert cam.dtype == guided.dtype == np.float64
    cam_err = rel(cam, captum_grad_cam(model, net, x, top_NK, "relu4_3", "bilinear"))
    guided_err = rel(guided, captum_guided_grad_cam(model, net, x, top_NK, "relu5_3", "bilinear"))
    print(f"\n[vgg16 64x64, float64] Grad-CAM at relu4_3 max rel diff {cam_err:.2e}, guided Grad-CAM "
          f"{guided_err:.2e} ({time.perf_counter() - t0:.1f} s)")
    assert cam_err < 1e-10 and guided_err < 1e-10


@pytest.mark.parametrize("mode", ["bilinear", "nearest"])
@pytest.mark.parametrize("size_in, size_out", [((4, 4), (64, 64)), ((5, 7), (88, 61)), ((7, 5), (11, 9))])
def test_interpolate_matches_torch(mode, size_in, size_out):
    maps = np.random.default_rng(3).normal(size=(2, 3, *size_in)).astype(np.float32)
    expected = F.interpolate(torch.from_numpy(maps), size_out, mode=mode).numpy()
    err = rel(saliency.interpolate(maps, size_out, mode), expected)
    print(f"\ninterpolate {size_in} -> {size_out} ({mode}): max rel diff {err:.2e}")
    assert err < 1e-6


def test_all_classes_at_224_in_chunks_match_layer_grad_cam(vgg):
    # Guided Grad-CAM is compared at 64x64 only: at 224x224 in float32, jaxvis's and Captum's
    # guided backpropagation differ by 2e-3 (max rel) on 0.4% of the pixels, where float noise
    # switches a ReLU's [f > 0] gate; in float64 the two guided Grad-CAMs agree to 3e-15.
    t0 = time.perf_counter()
    model, params, net, x = vgg16(vgg, 224, 1)
    cams = saliency.grad_cam(model, params, x, "all", memory_budget=1e8)  # 124 classes a chunk, 9 chunks
    classes_NK = np.argsort(-np.asarray(cams).max(axis=(2, 3)), axis=1)[:, :2]  # the two strongest maps
    ours = saliency.interpolate(cams[:, classes_NK[0]], x.shape[1:3])
    expected = captum_grad_cam(model, net, x, classes_NK, "relu5_3", "bilinear")
    err = rel(ours, expected)
    print(f"\n[vgg16 224x224] Grad-CAM of all classes, 2 against Captum: max rel diff {err:.2e} "
          f"({time.perf_counter() - t0:.1f} s)")
    assert cams.shape == (1, 1000, 14, 14)
    assert np.count_nonzero(expected) > expected.size // 10
    assert err < TOL
