"""Your own Flax model in jaxvis: wrap it, choose a layer, project and explain."""

import flax.linen as nn
import jax
import numpy as np

import jaxvis
from jaxvis import saliency
from jaxvis.wrap import wrap_linen


class CNN(nn.Module):
    @nn.compact
    def __call__(self, x):
        x = nn.max_pool(nn.relu(nn.Conv(8, (3, 3), padding=1, name="conv1")(x)), (2, 2), (2, 2))
        x = nn.max_pool(nn.relu(nn.Conv(16, (3, 3), padding=1, name="conv2")(x)), (2, 2), (2, 2))
        return nn.Dense(10, name="head")(x.reshape(x.shape[0], -1))


pixels = np.random.default_rng(0).uniform(size=(4, 32, 32, 3)).astype(np.float32)  # RGB in [0, 1]
module = CNN()
key = jax.random.key(1, impl="rbg")  # rbg keys compile fast on CPU
model, params = wrap_linen(module, jax.jit(module.init)(key, pixels), pixels,
                           mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))
print(model.listing())  # conv1, relu1, pool1, conv2, relu2, pool2, flatten1, head

images = model.normalize(pixels)
image = images[0]
projection = jaxvis.project(model, params, image, "relu2", jaxvis.Select.strongest(5), rule="deconvnet")
maps = saliency.saliency(model, params, images, classes=3, rule="guided")  # (4, 32, 32)
