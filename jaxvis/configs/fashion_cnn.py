"""mnist_cnn on Fashion-MNIST, with Fashion-MNIST's pixel mean and std.

Run (30 minutes on 2 shared CPU cores; `apt-get install dataset-fashion-mnist` first):

    python scripts/train.py --config fashion_cnn --workdir outputs/fashion_cnn \\
        --export checkpoints/fashion_cnn

Expected: 91.70% test accuracy (top-5 99.91%) after 6 epochs; after each epoch 87.84, 89.42,
90.42, 91.33, 91.57, 91.70%. This is the shipped checkpoints/fashion_cnn (see its card.json).
"""

from jaxvis.configs import Config

FASHION_MEAN, FASHION_STD = (0.2860,), (0.3530,)


def get_config() -> Config:
    return Config(name="fashion_cnn", model="mnist_cnn", dataset="fashion_mnist",
                  model_overrides={"mean": FASHION_MEAN, "std": FASHION_STD}, optimizer="adam",
                  learning_rate=1e-3, schedule="cosine", num_epochs=6, batch_size=128, checkpoint_every_steps=500)
