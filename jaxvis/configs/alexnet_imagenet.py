"""torchvision's AlexNet on ImageNet 2012 with torchvision's reference recipe.

SGD, batch 128, learning rate 1e-2, momentum 0.9, weight decay 1e-4, tenfold drops at
epochs 30 and 60, 90 epochs; 224 crops and flips of the 256 image, 10-crop evaluation.

Run (many GPU-days):

    python scripts/train.py --config alexnet_imagenet --workdir outputs/alexnet --data-dir DIR

Expected: about 56.5% top-1 and 79.1% top-5 validation accuracy (torchvision's AlexNet
weights, single centre crop); not reproduced here.
"""

from jaxvis.configs import Config


def get_config() -> Config:
    return Config(name="alexnet_imagenet", model="alexnet", dataset="imagenet2012", eval_split="validation",
                  optimizer="sgd", learning_rate=1e-2, momentum=0.9, schedule="step", decay_epochs=(30, 60),
                  weight_decay=1e-4, num_epochs=90, batch_size=128, eval_batch_size=50, augment=True,
                  ten_crop_eval=True, eval_every_epochs=5, log_every_steps=200, checkpoint_every_steps=5000)
