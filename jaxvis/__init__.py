"""jaxvis: seeing inside convolutional networks with JAX.

Zeiler & Fergus's deconvnet and the methods around it, as pure functions over one
forward pass: ``model.apply(params, x, rule) -> (logits, trace)``.

Public surface::

    jaxvis.build(name, **overrides) -> Model        # the zoo (also jaxvis.models.build)
    jaxvis.project(model, params, x, layer, select, rule="deconvnet")
    jaxvis.project_batch(model, params, x_NHWC, layer, select, rule="deconvnet")  # checked, vmapped
    jaxvis.Select.unit / .strongest / .map          # what to project
    jaxvis.wrap(apply_fn, params, x_example)        # any JAX network as a model (also wrap_linen,
                                                    # wrap_nnx, wrap_equinox)

Modules: ``layers`` (ops and their inverses), ``rules`` (ReLU backward rules),
``models`` (architectures as data), ``project`` (both deconvnet paths), ``weights``
(torchvision/Keras import), ``topk``, ``occlusion``, ``saliency``, ``synthesis``
(class models, inversion), ``analysis``, ``data``, ``images`` (photos in: read,
preset, normalize), ``classes`` (class names), ``train``, ``checkpoint``, ``plots``.
Note that ``jaxvis.project`` and ``jaxvis.wrap`` are the functions; their modules are
imported as ``from jaxvis.project import ...`` and ``from jaxvis.wrap import ...``.
"""

from jaxvis import layers, models, rules, weights
from jaxvis.models import Layer, Model, build
from jaxvis.project import Select, project, project_batch, project_explicit
from jaxvis.wrap import wrap, wrap_equinox, wrap_linen, wrap_nnx

__all__ = ["Layer", "Model", "Select", "build", "layers", "models", "project", "project_batch", "project_explicit",
           "rules", "weights", "wrap", "wrap_equinox", "wrap_linen", "wrap_nnx"]
