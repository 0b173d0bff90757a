"""jaxvis's ResNet-18 and ResNet-50 against torchvision's, written out here in torch.nn.

``TorchResNet`` below is torchvision's ``models/resnet.py`` (BasicBlock, Bottleneck with
the stride on its 3x3 convolution, ``downsample``, ``avgpool``, ``fc``), since
torchvision does not import here. Its random weights, with random batch-norm statistics,
go through a ``.pth`` file in torchvision's names into :func:`jaxvis.weights.load`; then
the logits agree in eval mode, and in train mode (batch statistics) the logits and the
updated running statistics agree; :func:`jaxvis.weights.torch_module` rebuilds a module
that loads the same state dict strictly and computes the same logits. Projections of the
strongest unit of a block's output in ``layer3`` and ``layer4`` with the three rules
agree with Captum's ``NeuronGradient``, ``NeuronDeconvolution`` and
``NeuronGuidedBackprop`` on that twin (torchvision's blocks call one in-place ReLU module
twice, which Captum's hooks cannot take; the twin has one ReLU module per use).

Errors are max |difference| / max |reference|; run with ``-s`` to see them.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import torch
from torch import nn

from jaxvis import models, weights
from jaxvis.project import Select, project
from test_torch import CAPTUM, TOL, rel



class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, inplanes, planes, stride=1, downsample=None):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        return self.relu(self.bn2(self.conv2(out)) + identity)


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, inplanes, planes, stride=1, downsample=None):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * 4)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        return self.relu(self.bn3(self.conv3(out)) + identity)


class TorchResNet(nn.Module):
    def __init__(self, block, layers, num_classes=1000):
        super().__init__()
        self.inplanes = 64
        self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        self.layer1 = self._make_layer(block, 64, layers[0])
        self.layer2 = self._make_layer(block, 128, layers[1], 2)
        self.layer3 = self._make_layer(block, 256, layers[2], 2)
        self.layer4 = self._make_layer(block, 512, layers[3], 2)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(512 * block.expansion, num_classes)

    def _make_layer(self, block, planes, blocks, stride=1):
        downsample = None
        if stride != 1 or self.inplanes != planes * block.expansion:
            downsample = nn.Sequential(nn.Conv2d(self.inplanes, planes * block.expansion, 1, stride, bias=False),
                                       nn.BatchNorm2d(planes * block.expansion))
        layers = [block(self.inplanes, planes, stride, downsample)]
        self.inplanes = planes * block.expansion
        layers += [block(self.inplanes, planes) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


ARCHITECTURES = {"resnet18": (BasicBlock, (2, 2, 2, 2)), "resnet50": (Bottleneck, (3, 4, 6, 3))}


@pytest.fixture(scope="module", params=["resnet18", "resnet50"])
def pair(request, tmp_path_factory):
    """torchvision's network with random weights and statistics, and jaxvis's from its .pth file."""
    torch.manual_seed(0)
    net = TorchResNet(*ARCHITECTURES[request.param])
    with torch.no_grad():
        for module in net.modules():
            if isinstance(module, nn.BatchNorm2d):  # away from the identity, so that a mix-up shows
                module.weight.uniform_(0.5, 1.5)
                module.bias.normal_(0, 0.2)
                module.running_mean.normal_(0, 0.2)
                module.running_var.uniform_(0.5, 2.0)
                module.num_batches_tracked.fill_(7)
    path = tmp_path_factory.mktemp(request.param) / f"{request.param}.pth"
    torch.save(net.state_dict(), path)
    model = models.build(request.param, input_size=160)
    return net, model, weights.load(model, path)


def images(model, n=2, seed=1):
    x = np.random.default_rng(seed).uniform(0, 1, (n, *model.input_shape)).astype(np.float32)
    return np.asarray(model.normalize(x))


def test_logits_in_eval_mode(pair):
    net, model, params = pair
    x = images(model)
    with torch.no_grad():
        expected = net.eval()(torch.tensor(x.transpose(0, 3, 1, 2))).numpy()
    got = jax.jit(model.apply)(params, jnp.asarray(x))[0]
    err = rel(got, expected)
    print(f"\n{model.name} eval logits: {err:.2e}")
    assert err < TOL


def test_logits_and_running_statistics_in_train_mode(pair):
    net, model, params = pair
    x = images(model, n=4, seed=2)
    train_net = TorchResNet(*ARCHITECTURES[model.name])
    train_net.load_state_dict(net.state_dict())
    with torch.no_grad():
        expected = train_net.train()(torch.tensor(x.transpose(0, 3, 1, 2))).numpy()
    got, trace = jax.jit(lambda p, v: model.apply(p, v, train=True))(params, jnp.asarray(x))
    err = rel(got, expected)
    state = train_net.state_dict()
    stats = max(rel(trace.state[layer][leaf], state[f"{layer}.{key}"].numpy())
                for layer in trace.state for leaf, key in (("mean", "running_mean"), ("var", "running_var")))
    print(f"\n{model.name} train logits: {err:.2e}, running statistics: {stats:.2e}")
    assert err < TOL and stats < TOL
    assert len(trace.state) == sum(isinstance(m, nn.BatchNorm2d) for m in net.modules())


def test_torch_twin_loads_the_state_dict_and_agrees(pair):
    net, model, params = pair
    twin = weights.torch_module(model, params)
    assert set(twin.state_dict()) == set(net.state_dict())
    x = torch.tensor(images(model, seed=3).transpose(0, 3, 1, 2))
    with torch.no_grad():
        err = rel(twin(x).numpy(), net.eval()(x).numpy())
    print(f"\n{model.name} twin vs torchvision's: {err:.2e}")
    assert err < 1e-5


@pytest.mark.filterwarnings("ignore:Setting backward hooks on ReLU")
@pytest.mark.parametrize("layer", ["layer3.1.relu", "layer4.0.relu"])
@pytest.mark.parametrize("rule", ["gradient", "deconvnet", "guided"])
def test_projection_matches_captum(pair, layer, rule):
    net, model, params = pair
    twin = weights.torch_module(model, params)
    x_NHWC = images(model, n=1, seed=4)
    act = np.asarray(model.apply(params, jnp.asarray(x_NHWC), until=layer)[0][0])
    channel = int(np.argmax(act.max(axis=(0, 1))))
    row, col = (int(v) for v in np.unravel_index(np.argmax(act[:, :, channel]), act.shape[:2]))
    # Captum seeds the backward pass with 1 at the unit; project keeps its activation
    ours = np.asarray(project(model, params, jnp.asarray(x_NHWC[0]), layer, Select.unit(channel, row, col), rule))
    ours = ours / act[row, col, channel]
    module = twin.get_submodule(layer)
    x = torch.tensor(x_NHWC.transpose(0, 3, 1, 2))
    attribution = CAPTUM[rule](twin, module).attribute(x.clone().requires_grad_(), neuron_selector=(channel, row, col))
    expected = attribution.detach().numpy()[0].transpose(1, 2, 0)
    err = rel(ours, expected)
    print(f"\n{model.name} {rule:9s} {layer} unit ({row}, {col}, {channel}): {err:.2e}")
    assert np.abs(expected).max() > 0 and err < TOL
