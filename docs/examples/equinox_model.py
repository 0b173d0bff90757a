"""Your own Equinox model in jaxvis: it takes one CHW image; wrap_equinox vmaps it over
NHWC batches, as the rest of jaxvis passes them."""

import equinox as eqx
import jax
import numpy as np

import jaxvis
from jaxvis import saliency
from jaxvis.wrap import wrap_equinox

k1, k2, k3 = jax.random.split(jax.random.key(0, impl="rbg"), 3)  # rbg keys compile fast on CPU
net = eqx.nn.Sequential([
    eqx.nn.Conv2d(3, 8, 3, padding=1, key=k1), eqx.nn.Lambda(jax.nn.relu), eqx.nn.MaxPool2d(2, 2),
    eqx.nn.Conv2d(8, 16, 3, padding=1, key=k2), eqx.nn.Lambda(jax.nn.relu), eqx.nn.MaxPool2d(2, 2),
    eqx.nn.Lambda(lambda x: x.reshape(-1)), eqx.nn.Linear(16 * 8 * 8, 10, key=k3),
])

pixels = np.random.default_rng(0).uniform(size=(4, 32, 32, 3)).astype(np.float32)  # RGB in [0, 1], NHWC
model, params = wrap_equinox(net, pixels)
print(model.listing())  # layers/0, relu1, pool1, layers/3, relu2, pool2, flatten1, layers/7

images = model.normalize(pixels)
image = images[0]
projection = jaxvis.project(model, params, image, "relu2", jaxvis.Select.strongest(5), rule="guided")
maps = saliency.integrated_gradients(model, params, images, classes=3, steps=8)  # (4, 32, 32, 3)
