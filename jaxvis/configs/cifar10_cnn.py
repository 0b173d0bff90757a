"""The mnist_cnn architecture, widened, on CIFAR-10: SGD with momentum, cosine schedule,
weight decay, random crops and flips.

Run (GPU recommended):

    python scripts/train.py --config cifar10_cnn --workdir outputs/cifar10_cnn --data-dir DIR

Expected: not measured yet (no CIFAR-10 on the development machine); VGG-style nets of
this size usually reach 85-90% test accuracy.
"""

from jaxvis.configs import Config

CIFAR10_MEAN, CIFAR10_STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)


def get_config() -> Config:
    return Config(name="cifar10_cnn", model="mnist_cnn", dataset="cifar10",
                  model_overrides={"input_shape": (32, 32, 3), "widths": (64, 128), "hidden": 256,
                                   "mean": CIFAR10_MEAN, "std": CIFAR10_STD},
                  optimizer="sgd", learning_rate=0.05, momentum=0.9, schedule="cosine", weight_decay=5e-4,
                  num_epochs=30, batch_size=128, augment=True, checkpoint_every_steps=1000)
