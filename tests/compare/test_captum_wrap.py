"""Wrapped networks against Captum: the small CNN of ``tests/test_wrap.py`` as a Flax linen
module and as a plain function, and the same weights in a ``torch.nn`` network.

jaxvis projects a unit's value (``Select.unit``) with the rule's backward pass; Captum's
``NeuronGuidedBackprop`` and ``NeuronDeconvolution`` give the backward pass of the unit
itself, so Captum's attribution times the unit's value is the oracle. Errors are
max |difference| / max |Captum|, within 1e-4.
"""

import numpy as np
import pytest

import captum.attr as captum_attr
import jax.numpy as jnp
import torch
from conftest import rel_err
from test_torch import _threads  # noqa: F401  (autouse: torch on 2 threads, as in test_torch)
from test_wrap import TinyLinen, chw_dense, tiny_params, tiny_plain, tiny_tuple
from torch import nn

import jaxvis
from jaxvis.project import Select
from jaxvis.wrap import wrap, wrap_linen

TOL = 1e-4
CAPTUM = {"deconvnet": captum_attr.NeuronDeconvolution, "guided": captum_attr.NeuronGuidedBackprop}


class TorchTiny(nn.Module):
    """The small CNN in torch.nn (NCHW, a (C, H, W) flatten), holding the tuple's weights."""

    def __init__(self, params):
        super().__init__()
        self.conv1, self.relu1, self.pool1 = nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2)
        self.conv2, self.relu2, self.pool2 = nn.Conv2d(4, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2)
        self.fc1, self.relu3, self.fc2 = nn.Linear(72, 16), nn.ReLU(), nn.Linear(16, 5)
        tensor = lambda a: torch.tensor(np.asarray(a))
        with torch.no_grad():
            for name in ("conv1", "conv2"):
                getattr(self, name).weight.copy_(tensor(np.transpose(params[name]["kernel"], (3, 2, 0, 1))))
                getattr(self, name).bias.copy_(tensor(params[name]["bias"]))
            self.fc1.weight.copy_(tensor(chw_dense(params["fc1"]["kernel"], (3, 3, 8))))
            self.fc1.bias.copy_(tensor(params["fc1"]["bias"]))
            self.fc2.weight.copy_(tensor(np.asarray(params["fc2"]["kernel"]).T))
            self.fc2.bias.copy_(tensor(params["fc2"]["bias"]))

    def forward(self, x):
        x = self.pool1(self.relu1(self.conv1(x)))
        x = self.pool2(self.relu2(self.conv2(x)))
        return self.fc2(self.relu3(self.fc1(torch.flatten(x, 1))))


@pytest.fixture(scope="module")
def nets():
    params = tiny_params(tiny_tuple())
    x = jnp.asarray(np.random.default_rng(7).normal(size=(1, 12, 12, 3)), jnp.float32)
    return {"linen": wrap_linen(TinyLinen(), {"params": params}, x),
            "plain": (wrap(tiny_plain, params, x), params)}, TorchTiny(params).eval(), x


@pytest.mark.parametrize("way", ("linen", "plain"))
@pytest.mark.parametrize("rule", ("guided", "deconvnet"))
@pytest.mark.parametrize("layer, channel", [("relu2", 5), ("pool2", 2), ("relu1", 1), ("relu3", 7)])
def test_projections_equal_captum(nets, way, rule, layer, channel):
    wrapped, net, x = nets
    model, params = wrapped[way]
    act = np.asarray(model.apply(params, x)[1].activations[layer][0])
    if act.ndim == 3:
        row, col = np.unravel_index(np.argmax(act[..., channel]), act.shape[:2])
        select, value, neuron = Select.unit(channel, row, col), act[row, col, channel], (channel, row, col)
    else:
        select, value, neuron = Select.unit(channel), act[channel], (channel,)
    assert value > 0
    got = jaxvis.project(model, params, x[0], layer, select, rule)
    image = torch.from_numpy(np.asarray(x).transpose(0, 3, 1, 2).copy()).requires_grad_()
    want = CAPTUM[rule](net, getattr(net, layer)).attribute(image, neuron_selector=neuron)
    want = value * want.detach().numpy()[0].transpose(1, 2, 0)
    assert np.abs(want).max() > 0
    assert rel_err(got, want) < TOL, f"{way} {rule} {layer}: {rel_err(got, want):.2e}"
