"""Every layer kind's forward op against its PyTorch twin (``Layer.torch``), holding the
same params converted to torchvision's layout (``Layer.torch_tensors``); batch norm also
in training, its running statistics against PyTorch's."""

import sys
from pathlib import Path

import jax
import numpy as np
import pytest
import torch

from jaxvis import kinds, models, rules

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from test_kinds import MORE, SAMPLES, params_for  # noqa: E402

# PyTorch pads symmetrically: the grouped, dilated conv without bias, padded so
CASES = [*SAMPLES.values(), (models.conv("c", 6, (3, 2), padding=(2, 1), dilation=2, groups=3, bias=False),
                             [(9, 8, 6)])]


def to_torch(x):
    return torch.tensor(np.asarray(x).transpose(0, 3, 1, 2) if x.ndim == 4 else np.asarray(x))


def twin(layer, shape, params):
    module = layer.torch(shape)
    state = {suffix: torch.tensor(np.ascontiguousarray(to_file(np.asarray(params[leaf]))))
             for leaf, (suffix, _, _, _, to_file) in layer.torch_tensors(shape, None).items()}
    state.update({key: torch.tensor(value) for key, value in layer.torch_buffers.items()})
    module.load_state_dict(state, strict=True)
    return module


@pytest.mark.parametrize("train", [False, True])
@pytest.mark.parametrize("layer,shapes", CASES, ids=lambda c: c.kind if isinstance(c, kinds.Layer) else "")
def test_forward_matches_the_torch_twin(layer, shapes, train):
    params = params_for(layer, shapes[0])
    xs = tuple(jax.random.normal(jax.random.key(i), (4, *s)) for i, s in enumerate(shapes))
    module = twin(layer, shapes[0], params).train(train)
    run = kinds.Run(rules.gradient, train=train, rng=jax.random.key(5))
    y = np.asarray(layer.forward(params, xs, run))
    with torch.no_grad():
        expected = module(*(to_torch(x) for x in xs)).numpy()
    if layer.kind == "dropout" and train:  # different random masks: compare what is kept, and its scale
        kept, kept_torch = y != 0, expected != 0
        assert abs(kept.mean() - kept_torch.mean()) < 0.1
        np.testing.assert_allclose(y[kept], np.asarray(xs[0])[kept] / 0.7, rtol=1e-6)
        return
    if expected.ndim == 4:
        expected = expected.transpose(0, 2, 3, 1)
    elif layer.kind == "flatten":  # PyTorch flattens (C, H, W), jaxvis (H, W, C)
        h, w, c = shapes[0]
        expected = expected.reshape(4, c, h, w).transpose(0, 2, 3, 1).reshape(4, -1)
    np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-5)
    for leaf, value in run.state.get(layer.name, {}).items():
        key = {"mean": "running_mean", "var": "running_var"}[leaf]
        np.testing.assert_allclose(np.asarray(value), module.state_dict()[key].numpy(), rtol=1e-5, atol=1e-6)


def test_asymmetric_padding_has_no_twin():
    layer, shapes = MORE[0]
    with pytest.raises(ValueError, match=r"layer 'c': PyTorch takes symmetric padding only, got \(\(2, 0\), \(1, 1\)\)"):
        layer.torch(shapes[0])
