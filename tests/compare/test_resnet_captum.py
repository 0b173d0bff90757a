"""jaxvis on ResNet-18 and ResNet-50 against Captum on their PyTorch twins
(:func:`jaxvis.weights.torch_module`, the same random weights, eval mode).

Projections: the gradient, deconvnet and guided projections of the strongest unit of the
last block's output (its final ReLU) in ``layer3`` and ``layer4`` against Captum's
``NeuronGradient``, ``NeuronDeconvolution`` and ``NeuronGuidedBackprop`` on the twin's
module of the same name. Captum's deconvnet and guided rules are backward hooks on
``nn.ReLU`` modules, so each ReLU *module* must run once per forward pass: torchvision's
``BasicBlock`` and ``Bottleneck`` call one in-place ``self.relu`` two or three times,
which those hooks cannot take (and ``layer3.1.relu`` there would name two tensors). The
twin holds one non-in-place ReLU module per use, at the names jaxvis's layers have
(``layer3.1.relu1`` after ``bn1``, ``relu2`` in a bottleneck, ``relu`` after the
addition); ReLUs hold no tensors, so its state dict is torchvision's (checked against
torchvision's own blocks in ``test_resnet_torch``). A test below checks that every ReLU
module of the twin runs exactly once, so the hooks apply each rule at every ReLU once and
``layer3.1.relu`` is the block's output. The projections run in float64 (jaxvis under
``jax.enable_x64``, the twin in ``double``): in float32, the two frameworks' different
summation orders flip a few ReLU gates near zero, and a flipped gate moves the
deconvnet and guided projections by far more than 1e-4. Batch-norm statistics are drawn
away from the identity, so that a mix-up of scale, bias, mean or variance shows.

Occlusion: :func:`jaxvis.occlusion.sweep`'s attribution, full and incremental, against
Captum's ``Occlusion`` of the twin's softmax output for ResNet-18 at 32x32 in float32
(occlusion needs no gradient, so a flipped gate moves a score by about float32's noise).

Errors are max |difference| / max |Captum|; run with ``-s`` to see them. Sizes are small
(ResNet-18 at 64x64, ResNet-50 at 64x64) to keep the file near a minute on 2 cores.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import captum.attr as captum_attr
import torch
from torch import nn
from conftest import rel_err as rel
from test_torch import _threads  # noqa: F401  (autouse: torch on 2 threads, as in test_torch)

from jaxvis import kinds, models, occlusion, weights
from jaxvis.project import Select, project

TOL = 1e-4
CAPTUM = {"gradient": captum_attr.NeuronGradient, "deconvnet": captum_attr.NeuronDeconvolution,
          "guided": captum_attr.NeuronGuidedBackprop}
# the last block's output in layer3 and in layer4
UNITS = {"resnet18": ("layer3.1.relu", "layer4.1.relu"), "resnet50": ("layer3.5.relu", "layer4.2.relu")}
SIZE = 64


def random_statistics(params, seed: int = 0):
    """``params`` with every batch norm's scale, bias and running statistics drawn at random."""
    rng = np.random.default_rng(seed)
    draw = {"scale": lambda n: rng.uniform(0.5, 1.5, n), "bias": lambda n: rng.normal(0, 0.2, n),
            "mean": lambda n: rng.normal(0, 0.2, n), "var": lambda n: rng.uniform(0.5, 2.0, n)}
    return {name: {leaf: (draw[leaf](len(v)).astype(np.float32) if "var" in leaves else np.asarray(v))
                   for leaf, v in leaves.items()}
            for name, leaves in params.items()}


@pytest.fixture(scope="module", params=sorted(UNITS))
def resnet(request):
    """(model at 64x64, float64 params, float64 twin in eval mode, one float64 image NHWC)."""
    model = models.build(request.param, input_size=SIZE)
    params = random_statistics(model.init(jax.random.key(0)))
    twin = weights.torch_module(model, params).double().eval()
    params64 = jax.tree.map(lambda a: np.asarray(a, np.float64), params)
    x = np.random.default_rng(1).uniform(0, 1, (1, *model.input_shape))
    return model, params64, twin, np.asarray(model.normalize(x), np.float64)


def test_every_relu_module_of_the_twin_runs_once(resnet):
    model, _, twin, x_NHWC = resnet
    calls = {}
    relus = {name: m for name, m in twin.named_modules() if isinstance(m, nn.ReLU)}
    hooks = [m.register_forward_hook(lambda m, i, o, name=name: calls.__setitem__(name, calls.get(name, 0) + 1))
             for name, m in relus.items()]
    with torch.no_grad():
        twin(torch.from_numpy(x_NHWC.transpose(0, 3, 1, 2).copy()))
    for hook in hooks:
        hook.remove()
    assert not any(m.inplace for m in relus.values())
    assert calls == {layer.name: 1 for layer in model.layers if isinstance(layer, kinds.ReLU)}


@pytest.mark.filterwarnings("ignore:Setting backward hooks on ReLU")
@pytest.mark.parametrize("stage", [0, 1], ids=["layer3", "layer4"])
def test_projections_equal_captums_neuron_attributions(resnet, stage):
    model, params, twin, x_NHWC = resnet
    layer = UNITS[model.name][stage]
    with jax.enable_x64(True):
        act = np.asarray(model.apply(params, jnp.asarray(x_NHWC), until=layer)[0][0])
        channel = int(np.argmax(act.max(axis=(0, 1))))
        row, col = (int(v) for v in np.unravel_index(np.argmax(act[:, :, channel]), act.shape[:2]))
        # Captum seeds the backward pass with 1 at the unit; project keeps its activation
        ours = {rule: np.asarray(project(model, params, jnp.asarray(x_NHWC[0]), layer, Select.unit(channel, row, col),
                                         rule)) / act[row, col, channel]
                for rule in CAPTUM}
    assert act[row, col, channel] > 0 and all(v.dtype == np.float64 for v in ours.values())
    x = torch.from_numpy(x_NHWC.transpose(0, 3, 1, 2).copy())
    errors = {}
    for rule, method in CAPTUM.items():
        attribution = method(twin, twin.get_submodule(layer)).attribute(x.clone().requires_grad_(),
                                                                       neuron_selector=(channel, row, col))
        expected = attribution.detach().numpy()[0].transpose(1, 2, 0)
        assert np.abs(expected).max() > 0, rule
        errors[rule] = rel(ours[rule], expected)
    print(f"\n{model.name} {SIZE}x{SIZE} float64 {layer} unit ({row}, {col}, {channel}): "
          + ", ".join(f"{rule} {err:.1e}" for rule, err in errors.items()))
    assert max(errors.values()) < TOL, errors


@pytest.mark.parametrize("method", ["full", "incremental"])
def test_occlusion_equals_captums_occlusion(method):
    model = models.build("resnet18", input_size=32)
    params = random_statistics(model.init(jax.random.key(2)), seed=2)
    twin = weights.torch_module(model, params)
    x_NHWC = np.asarray(model.normalize(np.random.default_rng(3).uniform(0, 1, (2, *model.input_shape))), np.float32)
    labels = np.argmax(np.asarray(model.apply(params, jnp.asarray(x_NHWC))[0]), axis=1)
    # patch 8 at stride 5: Captum's windows start at 0, 5, ..., 20 and leave the last 4 rows
    # and columns uncovered (attribution 0)
    ours = occlusion.sweep(model, params, x_NHWC, labels, 8, 5, fill=0.0, method=method).attribution_NHW
    with torch.no_grad():
        theirs = captum_attr.Occlusion(lambda v: torch.softmax(twin(v), -1)).attribute(
            torch.from_numpy(x_NHWC.transpose(0, 3, 1, 2).copy()), (3, 8, 8), strides=(3, 5, 5), baselines=0.0,
            target=torch.from_numpy(labels.astype(np.int64)), perturbations_per_eval=32)[:, 0].numpy()
    err = rel(ours, theirs)
    print(f"\nresnet18 32x32 occlusion ({method}) vs Captum: {err:.1e} (max |attribution| {np.abs(theirs).max():.1e})")
    assert np.abs(theirs).max() > 0 and err < TOL
