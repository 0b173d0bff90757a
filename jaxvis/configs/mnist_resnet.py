"""A small ResNet-18 (first stage 16 wide: 16-32-64-128, 0.7M parameters) on MNIST:
batch norm, residual blocks and a global average pool, trained with Adam and a cosine
schedule, batch 128.

Run:

    python scripts/train.py --config mnist_resnet --workdir outputs/mnist_resnet \\
        --data-dir ../shared/data/mnist --export checkpoints/mnist_resnet

Expected: test accuracy 0.9854 (top-5 0.9996) after 3 epochs (1404 steps), 695 s on 2 loaded
CPU cores, with `python scripts/train.py --config mnist_resnet --workdir /tmp/mnist_resnet
--data-dir /work/shared/data/mnist --export checkpoints/mnist_resnet` (shipped in
checkpoints/mnist_resnet, 2.7 MB, with its card).
"""

from jaxvis.configs import Config


def get_config() -> Config:
    return Config(name="mnist_resnet", model="resnet18", dataset="mnist",
                  model_overrides={"width": 16, "num_classes": 10, "input_size": 28, "channels": 1,
                                   "mean": (0.1307,), "std": (0.3081,)},
                  optimizer="adam", learning_rate=1e-3, schedule="cosine", num_epochs=3, batch_size=128,
                  checkpoint_every_steps=500)
