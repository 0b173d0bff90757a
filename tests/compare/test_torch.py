"""jaxvis against PyTorch and Captum on torchvision's AlexNet and VGG16 layouts.

The torch networks are built here as ``nn.Sequential`` modules laid out exactly like
torchvision's (``features``, ``avgpool``, ``classifier``, same indices; torchvision
itself is not needed), with non-inplace ``nn.ReLU`` modules so that Captum can hook
them. Their random weights go through ``.pth`` and ``.safetensors`` files in
torchvision's layout into :func:`jaxvis.weights.load`. Then:

1. logits agree (and re-exporting reproduces the torch state dict bit for bit), also at
   non-square input sizes where the adaptive average pool's bins repeat, overlap and
   differ in length, with the same parameters (``Model.with_input_size``), and
   :func:`jaxvis.weights.torch_module` rebuilds torchvision's layout there;
2. projections of one unit with the ``gradient``, ``deconvnet`` and ``guided`` rules
   agree with Captum's ``NeuronGradient``, ``NeuronDeconvolution`` and
   ``NeuronGuidedBackprop``.

Errors are max |difference| / max |reference|; run with ``-s`` to see them.
Needs ``pip install -r requirements-compare.txt`` (CPU torch and captum).
"""

import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import captum.attr as captum_attr
import torch
from safetensors.torch import save_file as save_safetensors
from torch import nn

from jaxvis import models, weights
from jaxvis.project import Select, project

TOL = 1e-4
CAPTUM = {"gradient": captum_attr.NeuronGradient, "deconvnet": captum_attr.NeuronDeconvolution,
          "guided": captum_attr.NeuronGuidedBackprop}


def rel(a, b) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-30))


class TorchvisionNet(nn.Module):
    """torchvision's AlexNet/VGG forward: features, adaptive avgpool, flatten (C, H, W), classifier."""

    def __init__(self, features, pool_hw, classifier):
        super().__init__()
        self.features = nn.Sequential(*features)
        self.avgpool = nn.AdaptiveAvgPool2d(pool_hw)
        self.classifier = nn.Sequential(*classifier)

    def forward(self, x):
        return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))


def torch_alexnet():  # torchvision/models/alexnet.py
    return TorchvisionNet([
        nn.Conv2d(3, 64, kernel_size=11, stride=4, padding=2), nn.ReLU(),
        nn.MaxPool2d(kernel_size=3, stride=2),
        nn.Conv2d(64, 192, kernel_size=5, padding=2), nn.ReLU(),
        nn.MaxPool2d(kernel_size=3, stride=2),
        nn.Conv2d(192, 384, kernel_size=3, padding=1), nn.ReLU(),
        nn.Conv2d(384, 256, kernel_size=3, padding=1), nn.ReLU(),
        nn.Conv2d(256, 256, kernel_size=3, padding=1), nn.ReLU(),
        nn.MaxPool2d(kernel_size=3, stride=2),
    ], (6, 6), [
        nn.Dropout(0.5), nn.Linear(256 * 6 * 6, 4096), nn.ReLU(),
        nn.Dropout(0.5), nn.Linear(4096, 4096), nn.ReLU(),
        nn.Linear(4096, 1000),
    ])


def torch_vgg16():  # torchvision/models/vgg.py, cfg "D", no batch norm
    features, cin = [], 3
    for v in [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"]:
        if v == "M":
            features.append(nn.MaxPool2d(kernel_size=2, stride=2))
        else:
            features += [nn.Conv2d(cin, v, kernel_size=3, padding=1), nn.ReLU()]
            cin = v
    return TorchvisionNet(features, (7, 7), [
        nn.Linear(512 * 7 * 7, 4096), nn.ReLU(), nn.Dropout(0.5),
        nn.Linear(4096, 4096), nn.ReLU(), nn.Dropout(0.5),
        nn.Linear(4096, 1000),
    ])


# model name -> (torch builder, jaxvis layer to project from, its torchvision features index)
CASES = {"alexnet": (torch_alexnet, "conv5", 10), "vgg16": (torch_vgg16, "conv4_3", 21)}


def randomize(net, gen):
    """He-normal weights and non-zero biases: signals keep their scale through 16 layers
    (PyTorch's default init shrinks them until the logits are nearly the fc8 bias)."""
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                fan_in = m.weight[0].numel()
                m.weight.copy_(torch.randn(m.weight.shape, generator=gen) * (2.0 / fan_in) ** 0.5)
                m.bias.copy_(torch.randn(m.bias.shape, generator=gen) * 0.1)


def jaxvis_projection(model, params, x_NHWC, layer, unit, rule):
    """``jaxvis.project`` of one unit for image 0 (HWC), unit = (row, col, channel).

    Captum seeds the backward pass with 1 at the unit; ``project`` keeps the unit's
    activation (the paper passes the feature map down), hence the division.
    """
    row, col, channel = unit
    x = x_NHWC[0]
    activation = model.apply(params, x[None], until=layer)[0][0, row, col, channel]
    assert float(activation) > 0, "compare at an active unit, or both sides are trivially zero"
    return np.asarray(project(model, params, x, layer, Select.unit(channel, row, col), rule) / activation)


@pytest.fixture(scope="module", autouse=True)
def _threads():
    old = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(old)


@pytest.fixture(scope="module", params=sorted(CASES))
def nets(request, tmp_path_factory):
    """(jaxvis model, params loaded from torchvision-layout files, torch net, its state dict)."""
    name = request.param
    build, _, _ = CASES[name]
    t0 = time.perf_counter()
    gen = torch.Generator().manual_seed(0)
    net = build().eval()
    randomize(net, gen)
    state = net.state_dict()
    folder = tmp_path_factory.mktemp(name)
    torch.save(state, folder / f"{name}.pth")
    save_safetensors(state, str(folder / f"{name}.safetensors"))

    model = models.build(name)
    params = weights.load(model, folder / f"{name}.pth")
    from_st = weights.load(model, folder / f"{name}.safetensors")
    assert jax.tree.structure(from_st) == jax.tree.structure(params)
    for a, b in zip(jax.tree.leaves(from_st), jax.tree.leaves(params)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    print(f"\n[{name}] torch init + .pth/.safetensors write + 2 loads: {time.perf_counter() - t0:.1f} s")
    return model, params, net, state


def test_export_reproduces_torch_state_dict(nets, tmp_path):
    model, params, net, state = nets
    exported = weights.to_torchvision(model, params)
    assert list(exported) == list(state)  # torchvision's key order too
    for key, value in state.items():
        np.testing.assert_array_equal(exported[key], value.numpy())
    # what jaxvis writes, torch reads back strictly into the same architecture
    weights.save(model, params, tmp_path / "out.pth")
    net.load_state_dict(torch.load(tmp_path / "out.pth", weights_only=True), strict=True)


def test_logits_match_torch(nets):
    model, params, net, _ = nets
    t0 = time.perf_counter()
    x = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = net(x).numpy()
    logits, _ = model.apply(params, jnp.asarray(x.numpy().transpose(0, 2, 3, 1)))
    err = rel(logits, expected)
    print(f"\n[{model.name}] logits: max|logit| {np.abs(expected).max():.3g}, std {expected.std():.3g}, "
          f"max rel diff {err:.2e} ({time.perf_counter() - t0:.1f} s)")
    assert expected.std() > 0.1 * np.abs(expected).max()  # not just a shared bias
    assert err < TOL


# Non-square sizes: pool5 of 1x1 / 2x2 (every bin repeats one value or two), then
# AlexNet's 8x13 and 10x11 and VGG16's 3x5 and 9x14 (bins that overlap and differ in length)
SIZES = {"alexnet": [(67, 93), (300, 451), (351, 383)], "vgg16": [(67, 93), (96, 160), (300, 451)]}


def bin_lengths(size: int, out: int) -> list[int]:
    """PyTorch's adaptive bins along one axis: [floor(i*size/out), ceil((i+1)*size/out))."""
    return [-(-(i + 1) * size // out) - i * size // out for i in range(out)]


@pytest.mark.parametrize("which", range(3))
def test_logits_match_torch_at_other_input_sizes(nets, which):
    model, params, net, state = nets
    size = SIZES[model.name][which]
    sized = model.with_input_size(size)  # the same params: the adaptive pool fixes fc6's fan-in
    pool5, out = sized.shapes["pool5"][:2], sized.layer("avgpool").output_size
    lengths = [bin_lengths(p, o) for p, o in zip(pool5, out)]
    t0 = time.perf_counter()
    x = torch.randn(1, 3, *size, generator=torch.Generator().manual_seed(3))
    twin = weights.torch_module(sized, params)
    assert [(k, tuple(v.shape)) for k, v in twin.state_dict().items()] == \
        [(k, tuple(v.shape)) for k, v in state.items()]  # torchvision's names, counts and order
    assert isinstance(twin.avgpool, nn.AdaptiveAvgPool2d) and tuple(twin.avgpool.output_size) == out
    with torch.no_grad():
        expected, by_twin = net(x).numpy(), twin(x).numpy()
    logits, _ = sized.apply(params, jnp.asarray(x.numpy().transpose(0, 2, 3, 1)))
    err, err_twin = rel(logits, expected), rel(by_twin, expected)
    print(f"\n[{model.name}] {size[0]}x{size[1]}: pool5 {pool5[0]}x{pool5[1]}, bin lengths {lengths}; logits max rel "
          f"diff {err:.2e} (torch_module: {err_twin:.1e}; {time.perf_counter() - t0:.1f} s)")
    assert expected.std() > 0.1 * np.abs(expected).max()
    assert err < TOL and err_twin < 1e-6


def test_sizes_include_uneven_overlapping_bins():
    # the premise of the test above: some size averages bins of two lengths that share inputs
    for name, sizes in SIZES.items():
        model = models.build(name)
        uneven = [s for s in sizes for p, o in zip(model.with_input_size(s).shapes["pool5"][:2],
                                                    model.layer("avgpool").output_size)
                  if p > 1 and len(set(bin_lengths(p, o))) > 1 and sum(bin_lengths(p, o)) > p]
        assert uneven, name


@pytest.mark.filterwarnings("ignore:Setting backward hooks on ReLU")
@pytest.mark.parametrize("rule", ["gradient", "deconvnet", "guided"])
def test_projection_matches_captum(nets, rule):
    model, params, net, _ = nets
    _, layer, index = CASES[model.name]
    t0 = time.perf_counter()
    x = torch.randn(1, 3, 224, 224, generator=torch.Generator().manual_seed(2))
    x_NHWC = jnp.asarray(x.numpy().transpose(0, 2, 3, 1))

    # the strongest unit of one map (Zeiler & Fergus's choice); same map for every rule
    _, trace = model.apply(params, x_NHWC, until=layer)
    act = np.asarray(trace.activations[layer][0])
    channel = int(np.argmax(act.max(axis=(0, 1))))
    row, col = np.unravel_index(np.argmax(act[:, :, channel]), act.shape[:2])
    row, col = int(row), int(col)

    ours = jaxvis_projection(model, params, x_NHWC, layer, (row, col, channel), rule)
    attribution = CAPTUM[rule](net, net.features[index]).attribute(
        x.clone().requires_grad_(), neuron_selector=(channel, row, col))
    expected = attribution.detach().numpy()[0].transpose(1, 2, 0)
    err = rel(ours, expected)
    print(f"\n[{model.name}] {rule:9s} projection of {layer} unit (row {row}, col {col}, map {channel}): "
          f"max rel diff {err:.2e}, nonzero pixels {np.count_nonzero(expected)}/{expected.size} "
          f"({time.perf_counter() - t0:.1f} s)")
    assert np.abs(expected).max() > 0
    assert err < TOL

