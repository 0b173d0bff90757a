"""Weight import/export (jaxvis.weights) against independent oracles, without PyTorch.

Oracles: torchvision's published key names and shapes (written out by hand below), a
pure-numpy forward pass of mnist_cnn in PyTorch's NCHW/OIHW/(C,H,W)-flatten
semantics, explicit correlation loops, explicit flatten index arithmetic, and the
bytes we wrote ourselves (round trips, Keras .h5 files).
"""

import sys
import time

import h5py
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from safetensors.numpy import load_file as st_load, save_file as st_save

from jaxvis import models, weights


def rel(a, b) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-30))


def write_npz(path, state):
    with open(path, "wb") as f:
        np.savez(f, **state)


def small_zfnet():
    """ZFNet geometry (7x7/2 conv, ceil pooling, LRN, 6x6 maps before flatten), few maps."""
    return models.build("zfnet", widths=(4, 6, 8, 8, 5), hidden=12, num_classes=7)


# torchvision's own key names and shapes (torchvision/models/alexnet.py, mnist-like CNN)
ALEXNET_TORCHVISION = {
    "features.0.weight": (64, 3, 11, 11), "features.0.bias": (64,),
    "features.3.weight": (192, 64, 5, 5), "features.3.bias": (192,),
    "features.6.weight": (384, 192, 3, 3), "features.6.bias": (384,),
    "features.8.weight": (256, 384, 3, 3), "features.8.bias": (256,),
    "features.10.weight": (256, 256, 3, 3), "features.10.bias": (256,),
    "classifier.1.weight": (4096, 9216), "classifier.1.bias": (4096,),
    "classifier.4.weight": (4096, 4096), "classifier.4.bias": (4096,),
    "classifier.6.weight": (1000, 4096), "classifier.6.bias": (1000,),
}
MNIST_TORCH = {
    "features.0.weight": (32, 1, 3, 3), "features.0.bias": (32,),
    "features.2.weight": (32, 32, 3, 3), "features.2.bias": (32,),
    "features.5.weight": (64, 32, 3, 3), "features.5.bias": (64,),
    "features.7.weight": (64, 64, 3, 3), "features.7.bias": (64,),
    "classifier.0.weight": (128, 64 * 7 * 7), "classifier.0.bias": (128,),
    "classifier.3.weight": (10, 128), "classifier.3.bias": (10,),
}


def random_state(shapes, rng):
    return {k: (rng.standard_normal(s) / np.sqrt(np.prod(s[1:]) if len(s) > 1 else 10)).astype(np.float32)
            for k, s in shapes.items()}


def random_params(model, seed):
    """Params shaped like model.init (whose per-call jit compile is slow) with numpy values."""
    rng = np.random.default_rng(seed)
    shapes = jax.eval_shape(model.init, jax.random.key(0))
    return jax.tree.map(lambda s: jnp.asarray(rng.standard_normal(s.shape, dtype=np.float32)), shapes)


def assert_like_init(model, params):
    """Same pytree, shapes and dtype (float32 jax arrays) as model.init."""
    ref = jax.eval_shape(model.init, jax.random.key(0))
    assert jax.tree.structure(params) == jax.tree.structure(ref)
    for p, r in zip(jax.tree.leaves(params), jax.tree.leaves(ref)):
        assert isinstance(p, jax.Array) and p.dtype == jnp.float32 and p.shape == r.shape


# ---------------------------------------------------------------------------------------
# Key names derived from the layer tuple


def test_torchvision_names_match_torchvision():
    assert weights.torchvision_shapes(models.build("alexnet")) == ALEXNET_TORCHVISION
    vgg16 = weights.torchvision_shapes(models.build("vgg16"))
    convs = [0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28]  # torchvision vgg16 features indices
    widths = [64, 64, 128, 128, 256, 256, 256, 512, 512, 512, 512, 512, 512]
    expected, cin = {}, 3
    for i, w in zip(convs, widths):
        expected |= {f"features.{i}.weight": (w, cin, 3, 3), f"features.{i}.bias": (w,)}
        cin = w
    expected |= {"classifier.0.weight": (4096, 25088), "classifier.0.bias": (4096,),
                 "classifier.3.weight": (4096, 4096), "classifier.3.bias": (4096,),
                 "classifier.6.weight": (1000, 4096), "classifier.6.bias": (1000,)}
    assert vgg16 == expected
    vgg19 = weights.torchvision_shapes(models.build("vgg19"))
    assert [k for k in vgg19 if k.endswith("weight")][:16] == [
        f"features.{i}.weight" for i in (0, 2, 5, 7, 10, 12, 14, 16, 19, 21, 23, 25, 28, 30, 32, 34)]
    assert weights.torchvision_shapes(models.build("mnist_cnn")) == MNIST_TORCH


# ---------------------------------------------------------------------------------------
# Import against a numpy forward pass in PyTorch semantics


def np_conv_nchw(x, w, b, pad, dil=1, stride=1):
    """Cross-correlation of one CHW image with OIHW filters, zero padding."""
    _, h, wd = x.shape
    _, _, kh, kw = w.shape
    xp = np.pad(x, ((0, 0), (pad, pad), (pad, pad)))
    ho = (h + 2 * pad - dil * (kh - 1) - 1) // stride + 1
    wo = (wd + 2 * pad - dil * (kw - 1) - 1) // stride + 1
    out = np.zeros((w.shape[0], ho, wo))
    for i in range(kh):
        for j in range(kw):
            patch = xp[:, i * dil:i * dil + stride * (ho - 1) + 1:stride, j * dil:j * dil + stride * (wo - 1) + 1:stride]
            out += np.einsum("oi,ihw->ohw", w[:, :, i, j], patch)
    return out + b[:, None, None]


def np_mnist_forward(state, x_NCHW, dil):
    s = {k: v.astype(np.float64) for k, v in state.items()}
    relu = lambda a: np.maximum(a, 0)
    pool = lambda a: a.reshape(a.shape[0], a.shape[1] // 2, 2, a.shape[2] // 2, 2).max(axis=(2, 4))
    logits = []
    for x in x_NCHW.astype(np.float64):
        for i in (0, 2, 5, 7):
            x = relu(np_conv_nchw(x, s[f"features.{i}.weight"], s[f"features.{i}.bias"], dil, dil))
            if i in (2, 7):
                x = pool(x)
        v = x.reshape(-1)  # PyTorch flatten: (C, H, W)
        v = relu(s["classifier.0.weight"] @ v + s["classifier.0.bias"])
        logits.append(s["classifier.3.weight"] @ v + s["classifier.3.bias"])
    return np.stack(logits)


@pytest.mark.parametrize("dilation", [1, 2])
@pytest.mark.parametrize("suffix", [".npz", ".safetensors"])
def test_torch_layout_mnist_matches_numpy_forward(tmp_path, dilation, suffix):
    rng = np.random.default_rng(dilation)
    model = models.build("mnist_cnn", dilation=dilation)
    state = random_state(MNIST_TORCH, rng)
    state = {k: v + np.float32(0.05) if k.endswith("bias") else v for k, v in state.items()}
    path = tmp_path / f"mnist{suffix}"
    write_npz(path, state) if suffix == ".npz" else st_save(state, str(path))
    params = weights.load(model, path)
    assert_like_init(model, params)

    x = rng.standard_normal((2, 28, 28, 1)).astype(np.float32)
    logits, _ = model.apply(params, jnp.asarray(x))
    oracle = np_mnist_forward(state, x.transpose(0, 3, 1, 2), dilation)
    assert np.abs(oracle).max() > 0.1
    assert rel(logits, oracle) < 1e-5


def test_first_conv_against_correlation_loop_and_fc6_index_arithmetic(tmp_path):
    """ZFNet's conv1 (7x7, stride 2, padding 1) unit by unit, and fc6's row order."""
    rng = np.random.default_rng(1)
    model = small_zfnet()
    shapes = {"features.0.weight": (4, 3, 7, 7), "features.0.bias": (4,),
              "features.4.weight": (6, 4, 5, 5), "features.4.bias": (6,),
              "features.8.weight": (8, 6, 3, 3), "features.8.bias": (8,),
              "features.10.weight": (8, 8, 3, 3), "features.10.bias": (8,),
              "features.12.weight": (5, 8, 3, 3), "features.12.bias": (5,),
              "classifier.0.weight": (12, 5 * 6 * 6), "classifier.0.bias": (12,),
              "classifier.3.weight": (12, 12), "classifier.3.bias": (12,),
              "classifier.6.weight": (7, 12), "classifier.6.bias": (7,)}
    state = random_state(shapes, rng)
    write_npz(tmp_path / "z.npz", state)
    params = weights.load(model, tmp_path / "z.npz")
    assert_like_init(model, params)

    x = rng.standard_normal((1, 224, 224, 3)).astype(np.float32)
    _, trace = model.apply(params, jnp.asarray(x), until="conv1")
    conv1 = np.asarray(trace.activations["conv1"])
    assert conv1.shape == (1, 110, 110, 4)
    w, b = state["features.0.weight"].astype(np.float64), state["features.0.bias"]
    for r, c, o in [(0, 0, 0), (0, 109, 1), (109, 0, 2), (109, 109, 3), (37, 52, 1)]:
        acc = float(b[o])
        for i in range(3):
            for dy in range(7):
                for dx in range(7):
                    yy, xx = 2 * r + dy - 1, 2 * c + dx - 1  # padding 1
                    if 0 <= yy < 224 and 0 <= xx < 224:
                        acc += w[o, i, dy, dx] * x[0, yy, xx, i]
        assert abs(conv1[0, r, c, o] - acc) < 1e-4 * max(1.0, abs(acc))

    # fc6: jaxvis row (h, w, c) of the (6, 6, 5) pool5 map is torch column c*36 + h*6 + w
    assert model.shapes["pool5"] == (6, 6, 5)
    k, wt = np.asarray(params["fc6"]["kernel"]), state["classifier.0.weight"]
    for h in range(6):
        for ww in range(6):
            for c in range(5):
                np.testing.assert_array_equal(k[h * 30 + ww * 5 + c, :], wt[:, c * 36 + h * 6 + ww])
    np.testing.assert_array_equal(np.asarray(params["fc7"]["kernel"]), state["classifier.3.weight"].T)
    np.testing.assert_array_equal(np.asarray(params["fc8"]["bias"]), state["classifier.6.bias"])


# ---------------------------------------------------------------------------------------
# Round trips


@pytest.mark.parametrize("suffix", [".safetensors", ".npz"])
@pytest.mark.parametrize("name", ["mnist_cnn", "zfnet"])
def test_round_trip_is_exact(tmp_path, name, suffix):
    model = small_zfnet() if name == "zfnet" else models.build(name)
    params = random_params(model, 3)
    path = tmp_path / f"w{suffix}"
    weights.save(model, params, path)
    back = weights.load(model, path)
    assert jax.tree.structure(back) == jax.tree.structure(params)
    for a, b in zip(jax.tree.leaves(back), jax.tree.leaves(params)):
        assert a.dtype == jnp.float32
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    # the file holds torchvision keys and layouts: re-exporting reproduces it bit for bit
    on_disk = st_load(str(path)) if suffix == ".safetensors" else dict(np.load(path))
    assert on_disk.keys() == weights.torchvision_shapes(model).keys()
    exported = weights.to_torchvision(model, back)
    for key, value in on_disk.items():
        assert value.shape == weights.torchvision_shapes(model)[key]
        np.testing.assert_array_equal(exported[key], value)


def test_import_then_export_reproduces_the_file(tmp_path):
    state = random_state(MNIST_TORCH, np.random.default_rng(4))
    model = models.build("mnist_cnn")
    params = weights.from_torchvision(model, state)
    out = weights.to_torchvision(model, params)
    assert out.keys() == state.keys()
    for key in state:
        np.testing.assert_array_equal(out[key], state[key])


# ---------------------------------------------------------------------------------------
# Keras .h5 (Keras-2 layout of vgg16_weights_tf_dim_ordering_tf_kernels.h5)

FC1_FILL = 0.25
VGG16_KERAS_CONVS = [(1, 2, 64), (2, 2, 128), (3, 3, 256), (4, 3, 512), (5, 3, 512)]


def write_keras_vgg16(path, rng, top=True, keras1_names=False):
    """Write random weights in the Keras-2 layout; return what was written, by Keras name.

    ``keras1_names``: name the weights as the released VGG files do (written by Keras 1):
    ``block1_conv1_W_1:0`` and ``block1_conv1_b_1:0`` in the layer's group."""
    layers, cin = [("input_1", None, None)], 3  # weightless layers are listed too
    for block, n, width in VGG16_KERAS_CONVS:
        for i in range(1, n + 1):
            layers.append((f"block{block}_conv{i}", rng.standard_normal((3, 3, cin, width), dtype=np.float32),
                           rng.standard_normal(width, dtype=np.float32)))
            cin = width
        layers.append((f"block{block}_pool", None, None))
    if top:
        layers.append(("flatten", None, None))
        for name, fin, fout in [("fc1", 7 * 7 * 512, 4096), ("fc2", 4096, 4096), ("predictions", 4096, 1000)]:
            layers.append((name, rng.standard_normal((fin, fout), dtype=np.float32) if name != "fc1" else None,
                           rng.standard_normal(fout, dtype=np.float32)))
    written = {}
    with h5py.File(path, "w") as f:
        f.attrs["backend"] = b"tensorflow"
        f.attrs["keras_version"] = b"2.2.4"
        f.attrs["layer_names"] = np.array([name.encode() for name, _, _ in layers])
        for name, kernel, bias in layers:
            g = f.create_group(name)
            if bias is None:
                g.attrs["weight_names"] = np.array([], dtype="S1")
                continue
            kernel_name, bias_name = ((f"{name}_W_1:0", f"{name}_b_1:0") if keras1_names
                                      else (f"{name}/kernel:0", f"{name}/bias:0"))
            g.attrs["weight_names"] = np.array([kernel_name.encode(), bias_name.encode()])
            if name == "fc1":
                # 25088 x 4096 (100M values): write the first and last 1024 rows, leave the
                # other chunks unwritten so they read as the fill value; keeps the test fast
                kernel = g.create_dataset(kernel_name, shape=(25088, 4096), dtype=np.float32,
                                          chunks=(1024, 4096), fillvalue=FC1_FILL)
                kernel[:1024] = rng.standard_normal((1024, 4096), dtype=np.float32)
                kernel[-1024:] = rng.standard_normal((1024, 4096), dtype=np.float32)
                kernel = (kernel[:1024], kernel[-1024:])
            else:
                g.create_dataset(kernel_name, data=kernel)
            g.create_dataset(bias_name, data=bias)
            written[name] = (kernel, bias)
    return written


@pytest.mark.parametrize("keras1_names", [False, True], ids=["keras2-names", "released-file-names"])
def test_keras_h5_vgg16(tmp_path, keras1_names):
    t0 = time.perf_counter()
    model = models.build("vgg16")
    written = write_keras_vgg16(tmp_path / "vgg16_weights_tf_dim_ordering_tf_kernels.h5", np.random.default_rng(6),
                                keras1_names=keras1_names)
    params = weights.load(model, tmp_path / "vgg16_weights_tf_dim_ordering_tf_kernels.h5")
    assert_like_init(model, params)
    mapping = {f"conv{b}_{i}": f"block{b}_conv{i}" for b, n, _ in VGG16_KERAS_CONVS for i in range(1, n + 1)}
    mapping |= {"fc6": "fc1", "fc7": "fc2", "fc8": "predictions"}
    assert set(mapping) == set(params)
    for ours, keras in mapping.items():  # Keras is HWIO / (in, out) with channels-last flatten: no change
        kernel, bias = written[keras]
        np.testing.assert_array_equal(np.asarray(params[ours]["bias"]), bias)
        if ours != "fc6":
            np.testing.assert_array_equal(np.asarray(params[ours]["kernel"]), kernel)
    fc6 = params["fc6"]["kernel"]
    np.testing.assert_array_equal(np.asarray(fc6[:1024]), written["fc1"][0][0])
    np.testing.assert_array_equal(np.asarray(fc6[-1024:]), written["fc1"][0][1])
    np.testing.assert_array_equal(np.asarray(fc6[1024:-1024:997]), FC1_FILL)
    print(f"\nkeras vgg16 h5 write+load+check: {time.perf_counter() - t0:.1f} s")


def test_keras_h5_notop_reports_missing_classifier(tmp_path):
    write_keras_vgg16(tmp_path / "notop.h5", np.random.default_rng(7), top=False)
    with pytest.raises(ValueError) as info:
        weights.load(models.build("vgg16"), tmp_path / "notop.h5")
    msg = str(info.value)
    assert "6 problems" in msg and "_notop" in msg
    for key in ["fc1/kernel:0", "fc1/bias:0", "fc2/kernel:0", "fc2/bias:0", "predictions/kernel:0",
                "predictions/bias:0"]:
        assert f"missing {key}" in msg
    assert "(25088, 4096)" in msg


def test_keras_h5_needs_vgg_layer_names(tmp_path):
    with h5py.File(tmp_path / "k.h5", "w") as f:
        f.attrs["layer_names"] = np.array([b"block1_conv1"])
    with pytest.raises(ValueError, match="conv1"):
        weights.load(models.build("mnist_cnn"), tmp_path / "k.h5")


# ---------------------------------------------------------------------------------------
# Errors


def test_every_problem_is_listed(tmp_path):
    model = models.build("mnist_cnn")
    state = random_state(MNIST_TORCH, np.random.default_rng(8))
    del state["features.0.weight"], state["classifier.3.bias"]
    state["features.1.weight"] = np.zeros(3, np.float32)
    state["classifier.0.weight"] = np.zeros((128, 3137), np.float32)
    state["features.5.bias"] = np.zeros(65, np.float32)
    state["features.7.bias"] = np.zeros(64, np.int32)
    state["features.2.weight"][0, 0, 1, 2] = np.nan
    state["features.2.weight"][3, 1, 2, 0] = np.inf
    path = tmp_path / "bad.npz"
    write_npz(path, state)
    with pytest.raises(ValueError) as info:
        weights.load(model, path)
    msg = str(info.value)
    assert str(path) in msg and "7 problems" in msg
    assert "features.2.weight holds 2 non-finite values" in msg
    assert "missing features.0.weight (expected shape (32, 1, 3, 3))" in msg
    assert "missing classifier.3.bias (expected shape (10,))" in msg
    assert "unexpected features.1.weight (shape (3,))" in msg
    assert "wrong shape for classifier.0.weight: expected (128, 3136), got (128, 3137)" in msg
    assert "reads the flattened (7, 7, 64) output of 'pool2'" in msg
    assert "wrong shape for features.5.bias: expected (64,), got (65,)" in msg
    assert "features.7.bias must be floating point, got dtype int32" in msg


def test_params_of_another_model_do_not_export():
    params = random_params(models.build("mnist_cnn"), 0)
    with pytest.raises(ValueError) as info:
        weights.to_torchvision(small_zfnet(), params)
    msg = str(info.value)
    assert "missing params['conv5']['kernel']" in msg
    assert "unexpected params['fc5']" in msg
    assert "wrong shape for params['conv1']['kernel']: expected (7, 7, 3, 4), got (3, 3, 1, 32)" in msg


def test_float64_files_load_as_float32(tmp_path):
    state = {k: v.astype(np.float64) for k, v in random_state(MNIST_TORCH, np.random.default_rng(9)).items()}
    write_npz(tmp_path / "w.npz", state)
    params = weights.load(models.build("mnist_cnn"), tmp_path / "w.npz")
    assert all(p.dtype == jnp.float32 for p in jax.tree.leaves(params))
    np.testing.assert_array_equal(np.asarray(params["fc6"]["kernel"]),
                                  state["classifier.3.weight"].T.astype(np.float32))


def test_unknown_suffix_and_missing_file(tmp_path):
    model = models.build("mnist_cnn")
    (tmp_path / "w.ckpt").write_bytes(b"x")
    with pytest.raises(ValueError, match=r"unknown suffix '\.ckpt'.*\.pth.*\.safetensors.*\.npz.*\.h5"):
        weights.load(model, tmp_path / "w.ckpt")
    with pytest.raises(ValueError, match=r"unknown suffix '\.h5'"):
        weights.save(model, random_params(model, 0), tmp_path / "out.h5")
    with pytest.raises(FileNotFoundError, match="nowhere.safetensors"):
        weights.load(model, tmp_path / "nowhere.safetensors")


@pytest.mark.parametrize("suffix,fmt", [(".npz", ".npz archive"), (".safetensors", ".safetensors file"),
                                        (".h5", "Keras-2 .h5")])
def test_corrupt_file(tmp_path, suffix, fmt):
    path = tmp_path / f"corrupt{suffix}"
    path.write_bytes(b"\x00not really a weights file\xff" * 10)
    model = models.build("mnist_cnn") if suffix != ".h5" else models.build("vgg16")
    with pytest.raises(ValueError) as info:
        weights.load(model, path)
    assert str(path) in str(info.value) and fmt in str(info.value)


def test_pth_without_torch_says_what_to_do(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)  # makes `import torch` fail
    (tmp_path / "w.pth").write_bytes(b"PK")
    with pytest.raises(ImportError) as info:
        weights.load(models.build("mnist_cnn"), tmp_path / "w.pth")
    msg = str(info.value)
    assert "torch==2.13.0" in msg and ".safetensors" in msg and ".npz" in msg


# ---------------------------------------------------------------------------------------
# Adaptive average pooling: the same keys and shapes at any input size


@pytest.mark.parametrize("name,size", [("vgg16", (300, 451)), ("alexnet", (67, 93)), ("vgg19", 64)])
def test_torchvision_keys_and_shapes_do_not_depend_on_the_input_size(name, size):
    # torchvision's features.N, avgpool (no parameters), classifier.N: fc6 always reads the pooled maps
    default = models.build(name)
    sized = default.with_input_size(size)
    assert weights.torchvision_shapes(sized) == weights.torchvision_shapes(default)
    if name == "alexnet":
        assert weights.torchvision_shapes(sized) == ALEXNET_TORCHVISION


def test_fc6_rows_follow_the_pooled_maps_at_any_size(tmp_path):
    # jaxvis row (h, w, c) of the 7 x 7 x 512 avgpool output is torch column c * 49 + h * 7 + w,
    # at 224 and at an input whose pool5 is 2 x 3
    shapes = weights.torchvision_shapes(models.build("vgg16", hidden=4, num_classes=3))
    state = random_state(shapes, np.random.default_rng(10))
    write_npz(tmp_path / "v.npz", state)
    wt = state["classifier.0.weight"]
    for size in (224, (64, 96)):
        model = models.build("vgg16", hidden=4, num_classes=3, input_size=size)
        k = np.asarray(weights.load(model, tmp_path / "v.npz")["fc6"]["kernel"])
        for h, w, c in [(0, 0, 0), (6, 6, 511), (3, 5, 100), (1, 0, 7)]:
            np.testing.assert_array_equal(k[(h * 7 + w) * 512 + c], wt[:, c * 49 + h * 7 + w])


# ---------------------------------------------------------------------------------------
# Bad input: (id, call(tmp_path), what the ValueError must say: expected and given)

MNIST = models.build("mnist_cnn")
STATE = random_state(MNIST_TORCH, np.random.default_rng(11))
PARAMS = weights.from_torchvision(MNIST, STATE)


def _file(tmp_path, name, state):
    path = tmp_path / name
    write_npz(path, state) if name.endswith(".npz") else st_save(state, str(path))
    return path


def _junk(tmp_path, name):
    (tmp_path / name).write_bytes(b"\x00not really a weights file\xff" * 10)
    return tmp_path / name


def _keras_file(tmp_path):
    with h5py.File(tmp_path / "k.h5", "w") as f:
        f.attrs["layer_names"] = np.array([b"block1_conv1"])
    return tmp_path / "k.h5"


def _single_array(tmp_path):
    with open(tmp_path / "a.npz", "wb") as f:
        np.save(f, np.zeros(3))
    return tmp_path / "a.npz"


def _with(state, key, value):
    return {**state, key: value}


BAD_INPUTS = [
    ("load-suffix", lambda t: weights.load(MNIST, _junk(t, "w.ckpt")),
     "unknown suffix '.ckpt'; supported suffixes are ['.pth', '.pt', '.safetensors', '.npz', '.h5', '.hdf5']"),
    ("load-path-type", lambda t: weights.load(MNIST, 123), "path must be a str or os.PathLike, got int 123"),
    ("load-model-type", lambda t: weights.load("mnist_cnn", _file(t, "w.npz", STATE)),
     "model must be a jaxvis.models.Model (e.g. jaxvis.build('vgg16')), got str"),
    ("load-directory", lambda t: weights.load(MNIST, (t / "d.npz").mkdir() or t / "d.npz"), "d.npz' is not a file"),
    ("load-corrupt-npz", lambda t: weights.load(MNIST, _junk(t, "c.npz")), "as a .npz archive of named arrays"),
    ("load-npz-one-array", lambda t: weights.load(MNIST, _single_array(t)),
     "it holds a single array, not a named archive"),
    ("load-corrupt-safetensors", lambda t: weights.load(MNIST, _junk(t, "c.safetensors")),
     "c.safetensors' as a .safetensors file"),
    ("load-corrupt-h5", lambda t: weights.load(models.build("vgg16"), _junk(t, "c.h5")),
     "as a Keras-2 .h5 weights file (root attribute 'layer_names', per-layer 'weight_names')"),
    ("load-keras-non-vgg", lambda t: weights.load(MNIST, _keras_file(t)),
     "Keras .h5 files map only VGG layers (conv<block>_<i>, fc6, fc7, fc8); mnist_cnn has layer 'conv1'"),
    ("load-other-architecture", lambda t: weights.load(small_zfnet(), _file(t, "w.safetensors", STATE)),
     "wrong shape for features.0.weight: expected (4, 3, 7, 7), got (32, 1, 3, 3)"),
    ("load-missing-tensor", lambda t: weights.load(MNIST, _file(t, "w.npz", {k: v for k, v in STATE.items()
                                                                            if k != "classifier.3.bias"})),
     "1 problem:\n  - missing classifier.3.bias (expected shape (10,))"),
    ("load-extra-tensor", lambda t: weights.load(MNIST, _file(t, "w.npz", _with(STATE, "avgpool.weight",
                                                                                np.ones(2, np.float32)))),
     "unexpected avgpool.weight (shape (2,))"),
    ("load-int-tensor", lambda t: weights.load(MNIST, _file(t, "w.npz", _with(STATE, "features.0.bias",
                                                                              np.zeros(32, np.int64)))),
     "features.0.bias must be floating point, got dtype int64"),
    ("load-non-finite", lambda t: weights.load(MNIST, _file(t, "w.npz", _with(STATE, "features.0.bias",
                                                                              np.full(32, np.nan, np.float32)))),
     "features.0.bias holds 32 non-finite values (NaN or infinity)"),
    ("from-torchvision-not-a-mapping", lambda t: weights.from_torchvision(MNIST, list(STATE.values())),
     "state_dict must map torchvision keys to arrays, got list"),
    ("from-torchvision-other-size", lambda t: weights.from_torchvision(
        models.build("mnist_cnn", input_shape=(32, 32, 1)), STATE),
     "wrong shape for classifier.0.weight: expected (128, 4096), got (128, 3136)\n(dense layer 'fc5' reads the "
     "flattened (8, 8, 64) output of 'pool2', which follows from the model's input shape (32, 32, 1)"),
    ("to-torchvision-other-model", lambda t: weights.to_torchvision(small_zfnet(), PARAMS),
     "wrong shape for params['conv1']['kernel']: expected (7, 7, 3, 4), got (3, 3, 1, 32)"),
    ("to-torchvision-not-a-dict", lambda t: weights.to_torchvision(MNIST, list(PARAMS.values())),
     "params must be a dict {layer: {'kernel': array, 'bias': array}} for mnist_cnn, got list"),
    ("to-torchvision-non-finite", lambda t: weights.to_torchvision(MNIST, {**PARAMS, "fc6": {
        "kernel": PARAMS["fc6"]["kernel"], "bias": jnp.full(10, jnp.inf)}}),
     "params['fc6']['bias'] must be finite, got 10 non-finite values"),
    ("save-suffix", lambda t: weights.save(MNIST, PARAMS, t / "out.h5"),
     "unknown suffix '.h5'; supported suffixes are ['.safetensors', '.npz', '.pth', '.pt']"),
    ("save-other-model", lambda t: weights.save(small_zfnet(), PARAMS, t / "out.npz"),
     "missing params['conv5']['kernel'] (expected shape (3, 3, 8, 5))"),
    ("torchvision-shapes-not-a-model", lambda t: weights.torchvision_shapes(None),
     "model must be a jaxvis.models.Model (e.g. jaxvis.build('vgg16')), got NoneType"),
    ("torch-module-not-a-model", lambda t: weights.torch_module({"name": "vgg16"}, PARAMS),
     "model must be a jaxvis.models.Model (e.g. jaxvis.build('vgg16')), got dict"),
]


@pytest.mark.parametrize("call,message", [c[1:] for c in BAD_INPUTS], ids=[c[0] for c in BAD_INPUTS])
def test_bad_input_raises_value_error_saying_expected_and_given(tmp_path, call, message):
    with pytest.raises(ValueError) as info:
        call(tmp_path)
    assert message in str(info.value)
