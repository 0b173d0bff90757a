"""Pretrained weights in and out: torchvision state dicts and Keras VGG files to jaxvis params.

jaxvis layer tuples mirror torchvision's layouts, so the torchvision key of every
parameter is *derived* from the tuple: in a chain (AlexNet, VGG), a layer before the
``flatten`` layer is ``features.<its position in the tuple>``, a layer after it
``classifier.<its position after the flatten>``, and an adaptive average pool just
before the flatten is torchvision's ``avgpool`` (it has no parameters); in a graph (a
ResNet) a layer's name is its module path (``layer1.0.conv1``); no per-model key tables
exist. Each layer's kind names and converts its tensors
(:meth:`jaxvis.kinds.Layer.torch_tensors`): a conv weight goes from PyTorch's OIHW to
HWIO, a linear weight from ``(out, in)`` to ``(in, out)``, and the first dense layer
after the flatten has its input rows reordered from PyTorch's ``(C, H, W)`` flatten order
to jaxvis's ``(H, W, C)``; batch norm's ``weight``, ``bias``, ``running_mean`` and
``running_var`` are ``scale``, ``bias``, ``mean`` and ``var``, and its
``num_batches_tracked`` is ignored on import. :func:`load` reads
``.pth``/``.pt`` (through PyTorch, only when installed), ``.safetensors`` and ``.npz``
files with torchvision key names, and the Keras-2 VGG16/VGG19 ``.h5`` files
(``vgg16_weights_tf_dim_ordering_tf_kernels.h5``), whose kernels are already HWIO and
whose flatten is already channels-last, so they are copied as they are. Beware that
the Keras VGG weights expect caffe-style inputs: BGR channel order with the ImageNet
mean ``(103.939, 116.779, 123.68)`` subtracted from 0-255 pixels and no scaling, which
:meth:`jaxvis.models.Model.normalize` gives for a model with ``channel_order="BGR"``,
that mean divided by 255 and ``std`` 1/255. :func:`to_torchvision` and
:func:`save` are the exact inverse of the torchvision import. A file whose tensors do
not fit the model raises one ``ValueError`` that lists every missing, unexpected and
mis-shaped tensor.
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Callable, Mapping
from pathlib import Path

import jax.numpy as jnp
import numpy as np

from jaxvis import _checks
from jaxvis.kinds import INPUT
from jaxvis.models import Model, Params

TORCH_SUFFIXES = (".pth", ".pt")
LOAD_SUFFIXES = (*TORCH_SUFFIXES, ".safetensors", ".npz", ".h5", ".hdf5")
SAVE_SUFFIXES = (".safetensors", ".npz", *TORCH_SUFFIXES)
TORCH_REQUIREMENT = "torch==2.13.0"


@dataclasses.dataclass(frozen=True)
class _Entry:
    """One parameter tensor: where it lives in jaxvis params and in a file, and how it
    converts between the two layouts."""

    layer: str
    param: str  # "kernel" or "bias"
    key: str  # the file's name for it
    shape: tuple[int, ...]  # jaxvis shape
    file_shape: tuple[int, ...]
    to_jaxvis: Callable[[np.ndarray], np.ndarray]
    to_file: Callable[[np.ndarray], np.ndarray]


def _identity(a):
    return a


def _check_model(model) -> None:
    if not isinstance(model, Model):
        raise ValueError(f"model must be a jaxvis.models.Model (e.g. jaxvis.build('vgg16')), "
                         f"got {type(model).__name__}")


def _split(model: Model) -> int:
    """Where a chain's ``features`` end: the first layer with a flat output (its flatten)."""
    return next((i for i, name in enumerate(model.names) if len(model.shapes[name]) == 1), len(model.layers))


def _graph(model: Model) -> bool:
    """Whether a layer reads other than the layer before it (a residual network)."""
    return any(layer.inputs for layer in model.layers)


def _prefixes(model: Model) -> dict[str, str]:
    """Each layer's torchvision module path. A graph's layers are named by their paths
    (``layer1.0.conv1``); a chain is an ``nn.Sequential`` pair, ``features.<i>`` before
    its flatten and ``classifier.<j>`` after."""
    if _graph(model):
        return {name: name for name in model.names}
    flat = _split(model)
    return {name: f"features.{i}" if i < flat else f"classifier.{i - flat - 1}" for i, name in enumerate(model.names)}


def _torchvision_entries(model: Model) -> list[_Entry]:
    """The torchvision name, shape and conversion of every parameter, from the layer tuple
    and each layer's kind (:meth:`jaxvis.kinds.Layer.torch_tensors`)."""
    prefixes, flat_from, entries = _prefixes(model), {INPUT: None}, []
    for layer in model.layers:
        shape, first = model.input_shapes[layer.name], model.sources[layer.name][0]
        flat_from[layer.name] = layer.flattened(shape, flat_from[first])
        for leaf, (suffix, jaxvis_shape, file_shape, to_jaxvis, to_file) in \
                layer.torch_tensors(shape, flat_from[first]).items():
            entries.append(_Entry(layer.name, leaf, f"{prefixes[layer.name]}.{suffix}", jaxvis_shape, file_shape,
                                  to_jaxvis, to_file))
    return entries


def _torchvision_buffers(model: Model) -> dict[str, np.ndarray]:
    """File-only tensors (batch norm's ``num_batches_tracked``): ignored on import, written on export."""
    prefixes = _prefixes(model)
    return {f"{prefixes[layer.name]}.{key}": np.asarray(value) for layer in model.layers
            for key, value in layer.torch_buffers.items()}


_KERAS_CONV = re.compile(r"conv(\d+)_(\d+)")
_KERAS_DENSE = {"fc6": "fc1", "fc7": "fc2", "fc8": "predictions"}


def _keras_layer_name(model: Model, name: str) -> str:
    match = _KERAS_CONV.fullmatch(name)
    if match:
        return f"block{match[1]}_conv{match[2]}"
    if name in _KERAS_DENSE:
        return _KERAS_DENSE[name]
    raise ValueError(f"Keras .h5 files map only VGG layers (conv<block>_<i>, fc6, fc7, fc8); "
                     f"{model.name} has layer {name!r}")


def _keras_entries(model: Model) -> list[_Entry]:
    entries = []
    for name, group in model.param_shapes.items():
        keras, kshape, bshape = _keras_layer_name(model, name), group["kernel"], group["bias"]
        entries.append(_Entry(name, "kernel", f"{keras}/kernel:0", kshape, kshape, _identity, _identity))
        entries.append(_Entry(name, "bias", f"{keras}/bias:0", bshape, bshape, _identity, _identity))
    return entries


def torchvision_shapes(model: Model) -> dict[str, tuple[int, ...]]:
    """The tensors a torchvision state dict for ``model`` holds: ``{key: shape}``."""
    _check_model(model)
    return {**{e.key: e.file_shape for e in _torchvision_entries(model)},
            **{key: value.shape for key, value in _torchvision_buffers(model).items()}}


# ---------------------------------------------------------------------------------------
# Conversion with full error reports


def _shape_str(shape) -> str:
    return str(tuple(int(s) for s in shape))


def _convert(model: Model, tensors: Mapping[str, object], entries: list[_Entry], source: str,
             hint: str = "", ignored=()) -> Params:
    """File tensors to jaxvis params, raising one ValueError that lists every problem.

    ``hint`` is added to the message when there are problems; a note on the flatten is
    added when the first dense layer's weight has the wrong shape. Keys in ``ignored``
    may be present or not.
    """
    expected = {e.key: e for e in entries}
    first_dense = next((e for e in entries if e.param == "kernel" and len(e.shape) == 2), None)
    problems = []
    for e in entries:
        if e.key not in tensors:
            problems.append(f"missing {e.key} (expected shape {_shape_str(e.file_shape)})")
    for key in tensors:
        if key not in expected and key not in ignored:
            problems.append(f"unexpected {key} (shape {_shape_str(np.shape(tensors[key]))})")
    arrays = {}
    for e in entries:
        if e.key not in tensors:
            continue
        a = np.asarray(tensors[e.key])
        if a.dtype.kind != "f":
            problems.append(f"{e.key} must be floating point, got dtype {a.dtype}")
        elif a.shape != e.file_shape:
            problems.append(f"wrong shape for {e.key}: expected {_shape_str(e.file_shape)}, "
                            f"got {_shape_str(a.shape)}")
            if e is first_dense:
                hint += _flatten_hint(model, e.layer)
        elif not np.all(np.isfinite(a)):
            problems.append(f"{e.key} holds {int(np.size(a) - np.isfinite(a).sum())} non-finite values "
                            "(NaN or infinity)")
        else:
            arrays[e.key] = a
    if problems:
        lines = "\n".join(f"  - {p}" for p in problems)
        raise ValueError(f"{source} does not fit model {model.name} (input shape {model.input_shape}): "
                         f"{len(problems)} problem{'s' if len(problems) > 1 else ''}:\n{lines}{hint}")
    params: Params = {}
    for e in entries:
        value = e.to_jaxvis(arrays[e.key].astype(np.float32, copy=False))
        params.setdefault(e.layer, {})[e.param] = jnp.asarray(np.ascontiguousarray(value))
    return params


def _flatten_hint(model: Model, dense: str) -> str:
    """Where the first dense layer's fan-in comes from."""
    flat = _split(model)
    if flat in (0, len(model.layers)):
        return ""
    before = model.layers[flat - 1]
    if before.name not in model.fields:  # an adaptive pool: its output's size is fixed
        return f"\n(dense layer {dense!r} reads the flattened {model.shapes[before.name]} output of {before.name!r})"
    return (f"\n(dense layer {dense!r} reads the flattened {model.shapes[before.name]} output of {before.name!r}, "
            f"which follows from the model's input shape {model.input_shape}: build the model at the size the "
            "weights were trained at)")


def from_torchvision(model: Model, state_dict: Mapping[str, object], source: str = "state dict") -> Params:
    """jaxvis params from a torchvision-layout ``{key: array}`` (numpy or anything array-like).

    The exact inverse of :func:`to_torchvision`.
    """
    _check_model(model)
    if not isinstance(state_dict, Mapping):
        raise ValueError(f"state_dict must map torchvision keys to arrays, got {type(state_dict).__name__}")
    return _convert(model, state_dict, _torchvision_entries(model), source, _depth_hint(model, state_dict),
                    ignored=_torchvision_buffers(model))


def _depth_hint(model: Model, state_dict: Mapping[str, object]) -> str:
    """A graph's file with blocks the model lacks (``layer1.2``: resnet34's into resnet18)."""
    if not _graph(model):
        return ""
    ours = {".".join(name.split(".")[:2]) for name in model.names}
    extra = sorted({".".join(key.rsplit(".", 1)[0].split(".")[:2]) for key in state_dict} - ours)
    return f"\n(the file has blocks {extra} that {model.name} lacks: weights of a deeper network?)" if extra else ""


def to_torchvision(model: Model, params: Params) -> dict[str, np.ndarray]:
    """jaxvis params as a torchvision state dict of float32 numpy arrays.

    Conv weights are OIHW, linear weights ``(out, in)``, and the first linear layer after
    the flatten takes its inputs in PyTorch's ``(C, H, W)`` order. Batch norm's
    ``num_batches_tracked`` is written as 0 (an int64 scalar), so that PyTorch loads the
    file strictly.
    """
    _check_model(model)
    model.check_params(params)
    for layer, group in params.items():  # load refuses non-finite files: never write one
        for leaf, value in group.items():
            _checks.finite(value, f"params[{layer!r}][{leaf!r}]")
    entries = _torchvision_entries(model)
    return {**{e.key: np.ascontiguousarray(e.to_file(np.asarray(params[e.layer][e.param], np.float32)))
               for e in entries}, **_torchvision_buffers(model)}


# ---------------------------------------------------------------------------------------
# Files


def _path(path) -> Path:
    if not isinstance(path, (str, os.PathLike)):
        raise ValueError(f"path must be a str or os.PathLike, got {type(path).__name__} {path!r}")
    return Path(path)


def _suffix(path: Path, allowed: tuple[str, ...], verb: str) -> str:
    suffix = path.suffix.lower()
    if suffix not in allowed:
        raise ValueError(f"cannot {verb} weights file {str(path)!r}: unknown suffix {path.suffix!r}; "
                         f"supported suffixes are {list(allowed)}")
    return suffix


def _import_torch(path: Path):
    try:
        import torch
    except ImportError:
        raise ImportError(
            f"{str(path)!r} is a PyTorch file and reading or writing it needs PyTorch, which is not "
            f"installed. Install it with `pip install {TORCH_REQUIREMENT}` (the CPU wheel is enough), or "
            "convert the file to .safetensors or .npz where PyTorch is available, e.g. `python -c \"import "
            "torch, safetensors.torch as st; st.save_file(torch.load('w.pth', weights_only=True), "
            "'w.safetensors')\"`") from None
    return torch


def _read_torch(path: Path) -> dict[str, np.ndarray]:
    torch = _import_torch(path)
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise ValueError(f"cannot read {str(path)!r} as a PyTorch state dict "
                         f"(torch.load(weights_only=True)): {type(err).__name__}: {err}") from err
    if isinstance(obj, Mapping) and "state_dict" in obj and isinstance(obj["state_dict"], Mapping):
        obj = obj["state_dict"]
    if not isinstance(obj, Mapping):
        raise ValueError(f"{str(path)!r} holds a {type(obj).__name__}, not a state dict of tensors")
    out = {}
    for key, value in obj.items():
        if isinstance(value, torch.Tensor):
            value = value.detach().cpu()
            if value.is_floating_point():
                value = value.to(torch.float32)
            out[str(key)] = value.numpy()
        else:
            out[str(key)] = np.asarray(value)
    return out


def _read_safetensors(path: Path) -> dict[str, np.ndarray]:
    from safetensors.numpy import load_file
    try:
        return load_file(str(path))
    except Exception as err:
        raise ValueError(f"cannot read {str(path)!r} as a .safetensors file: {type(err).__name__}: {err}") from err


def _read_npz(path: Path) -> dict[str, np.ndarray]:
    try:
        data = np.load(path, allow_pickle=False)
        if not isinstance(data, np.lib.npyio.NpzFile):
            raise ValueError("it holds a single array, not a named archive")
        with data:
            return {key: data[key] for key in data.files}
    except Exception as err:
        raise ValueError(f"cannot read {str(path)!r} as a .npz archive of named arrays: "
                         f"{type(err).__name__}: {err}") from err


def _h5_names(group, attr: str) -> list[str]:
    """A Keras name-list attribute, also when Keras split it into ``attr0``, ``attr1``..."""
    if attr in group.attrs:
        values = list(group.attrs[attr])
    else:
        values, n = [], 0
        while f"{attr}{n}" in group.attrs:
            values += list(group.attrs[f"{attr}{n}"])
            n += 1
    return [v.decode("utf8") if isinstance(v, bytes) else str(v) for v in values]


def _read_keras_h5(path: Path) -> dict[str, np.ndarray]:
    import h5py
    try:
        with h5py.File(path, "r") as f:
            root = f["model_weights"] if "model_weights" in f else f
            layer_names = _h5_names(root, "layer_names")
            if not layer_names:
                raise ValueError("no 'layer_names' attribute: not a Keras-2 weights file "
                                 "(Keras 3 '.weights.h5' files are not supported)")
            out = {}
            for layer in layer_names:
                group = root[layer]
                names = _h5_names(group, "weight_names")
                # Keras reads a layer's weights by their order (kernel, then bias), not by
                # name: the released VGG files name them block1_conv1_W_1:0 and
                # block1_conv1_b_1:0 (Keras 1), later files block1_conv1/kernel:0.
                keys = [f"{layer}/kernel:0", f"{layer}/bias:0"] if len(names) == 2 else names
                for key, weight in zip(keys, names):
                    out[key] = np.asarray(group[weight])
            return out
    except Exception as err:
        raise ValueError(f"cannot read {str(path)!r} as a Keras-2 .h5 weights file (root attribute "
                         f"'layer_names', per-layer 'weight_names'): {type(err).__name__}: {err}") from err


def load(model: Model, path: str | os.PathLike) -> Params:
    """Read weights for ``model`` from a file, dispatching on its suffix.

    ``.pth``/``.pt``: a torchvision state dict, read with PyTorch
    (``torch.load(map_location="cpu", weights_only=True)``). ``.safetensors``, ``.npz``:
    the same keys and layouts, read without PyTorch. ``.h5``: the Keras-2 VGG16/VGG19
    weight files (``block1_conv1 ... fc1, fc2, predictions``; mind the caffe-style inputs
    these weights expect, see the module docstring).

    Returns ``{layer: {"kernel", "bias"}}`` of float32 ``jax.Array``, structured like
    ``model.init(key)``. Raises ``FileNotFoundError`` for a missing file and
    ``ValueError`` for an unknown suffix, an unreadable file, or tensors that do not fit
    the model (listing every missing, unexpected and mis-shaped one).
    """
    _check_model(model)
    path = _path(path)
    suffix = _suffix(path, LOAD_SUFFIXES, "load")
    if not path.exists():
        raise FileNotFoundError(f"weights file not found: {str(path)!r}")
    if not path.is_file():
        raise ValueError(f"weights path {str(path)!r} is not a file")
    source = f"weights file {str(path)!r}"
    if suffix in (".h5", ".hdf5"):
        entries = _keras_entries(model)
        tensors = _read_keras_h5(path)
        hint = ""
        if any(e.layer in _KERAS_DENSE and e.key not in tensors for e in entries):
            hint = ("\n(Keras '_notop' files have no fc1/fc2/predictions; the classifier layers "
                    "fc6/fc7/fc8 need the full file)")
        return _convert(model, tensors, entries, source, hint)
    readers = {".pth": _read_torch, ".pt": _read_torch, ".safetensors": _read_safetensors, ".npz": _read_npz}
    return from_torchvision(model, readers[suffix](path), source)


def save(model: Model, params: Params, path: str | os.PathLike) -> None:
    """Write ``params`` as a torchvision state dict: ``.safetensors``, ``.npz``, or
    ``.pth``/``.pt`` (needs PyTorch). :func:`load` reads it back exactly."""
    _check_model(model)
    path = _path(path)
    suffix = _suffix(path, SAVE_SUFFIXES, "save")
    state = to_torchvision(model, params)
    if suffix == ".safetensors":
        from safetensors.numpy import save_file
        save_file(state, str(path), metadata={"jaxvis_model": model.name, "layout": "torchvision"})
    elif suffix == ".npz":
        with open(path, "wb") as f:  # a file object keeps np.savez from appending ".npz"
            np.savez(f, **state)
    else:
        torch = _import_torch(path)
        torch.save({k: torch.tensor(v) for k, v in state.items()}, path)


def torch_module(model: Model, params: Params):
    """The same network as a PyTorch module in torchvision's layout, holding ``params``.

    Every layer is its kind's ``torch.nn`` twin (:meth:`jaxvis.kinds.Layer.torch`). A
    chain is torchvision's AlexNet/VGG layout: ``features`` and ``classifier`` are
    ``nn.Sequential`` with the tuple's indices (so Captum can address ``features[i]``),
    non-inplace ``nn.ReLU`` modules, and between them ``avgpool`` (an adaptive pool just
    before the flatten, else ``nn.Identity``) and a (C, H, W) flatten. A graph (a ResNet)
    holds each layer at its name's path (``layer1.0.conv1``, torchvision's names) and runs
    them in the tuple's order, each on its inputs. For comparisons and benchmarks against
    PyTorch tools; needs torch (``pip install -r requirements-compare.txt``).
    """
    _check_model(model)
    try:
        import torch
        from torch import nn
    except ImportError:
        raise ImportError(f"torch_module needs PyTorch: pip install {TORCH_REQUIREMENT}") from None

    modules = {layer.name: layer.torch(model.input_shapes[layer.name]) for layer in model.layers}
    if _graph(model):
        net = _torch_graph(model, modules, nn)
    else:
        flat = _split(model)
        before = model.names[:flat]
        avgpool = before[-1] if before and before[-1] not in model.fields else None  # torchvision's place for it

        class Net(nn.Module):
            def __init__(self):
                super().__init__()
                self.features = nn.Sequential(*(modules[n] for n in before if n != avgpool))
                self.avgpool = modules[avgpool] if avgpool else nn.Identity()
                self.classifier = nn.Sequential(*(modules[n] for n in model.names[flat + 1:]))

            def forward(self, x):
                return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))

        net = Net()
    state = to_torchvision(model, params)
    net.load_state_dict({k: torch.tensor(np.asarray(v)) for k, v in state.items()})
    return net.eval()


def _torch_graph(model: Model, modules: dict, nn):
    """A ``torch.nn.Module`` running ``modules`` (one per layer, registered at the layer
    names' dotted paths) over the model's graph."""
    sources = model.sources

    class Graph(nn.Module):
        def __init__(self):
            super().__init__()
            for name, module in modules.items():
                *path, leaf = name.split(".")
                parent = self
                for part in path:
                    if not hasattr(parent, part):
                        parent.add_module(part, nn.Module())
                    parent = getattr(parent, part)
                parent.add_module(leaf, module)
            self._order = tuple(modules.items())

        def forward(self, x):
            values = {INPUT: x}
            for name, module in self._order:
                values[name] = module(*(values[n] for n in sources[name]))
            return values[model.names[-1]]

    return Graph()
