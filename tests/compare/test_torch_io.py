"""Weight files through torch itself: .pth written by jaxvis load back exactly."""

import jax
import numpy as np
import pytest
import torch

from jaxvis import models, weights


def test_pth_round_trip(tmp_path):
    model = models.build("mnist_cnn")
    params = jax.tree.map(lambda s: np.random.default_rng(5).normal(size=s.shape).astype(np.float32),
                          jax.eval_shape(model.init, jax.random.key(0)))
    weights.save(model, params, tmp_path / "w.pth")
    state = torch.load(tmp_path / "w.pth", weights_only=True)
    assert tuple(state["features.0.weight"].shape) == (32, 1, 3, 3)  # torch's OIHW
    back = weights.load(model, tmp_path / "w.pth")
    for a, b in zip(jax.tree.leaves(back), jax.tree.leaves(params)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_corrupt_pth_names_path_and_format(tmp_path):
    path = tmp_path / "corrupt.pth"
    path.write_bytes(b"\x00not really a weights file\xff" * 10)
    with pytest.raises(ValueError) as info:
        weights.load(models.build("mnist_cnn"), path)
    assert str(path) in str(info.value) and "PyTorch state dict" in str(info.value)


@pytest.mark.parametrize("name,overrides", [
    ("zfnet", dict(widths=(16, 24, 32, 32, 24), hidden=64, num_classes=10)),  # LRN, ceil-mode pooling
    ("mnist_cnn", dict(dilation=2)),
    ("alexnet", dict(input_size=(67, 93), hidden=32, num_classes=10)),  # adaptive pool: 1x1 maps to 6x6
    ("vgg16", dict(input_size=(96, 160), hidden=32, num_classes=10)),  # 3x5 to 7x7: uneven, overlapping bins
])
def test_torch_module_computes_the_same_network(name, overrides):
    model = models.build(name, **overrides)
    params = model.init(jax.random.key(0))
    x = np.random.default_rng(0).normal(size=(2, *model.input_shape)).astype(np.float32)
    net = weights.torch_module(model, params)
    with torch.no_grad():
        expected = net(torch.from_numpy(x.transpose(0, 3, 1, 2))).numpy()
    got = np.asarray(model.apply(params, x)[0])
    err = np.abs(got - expected).max() / np.abs(expected).max()
    print(f"{name} torch_module logits rel err {err:.1e}")
    assert err < 1e-4
