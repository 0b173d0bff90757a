"""ZFNet (Zeiler & Fergus Fig. 3) on ImageNet 2012 with the paper's recipe (Sec. 3).

SGD, batch 128, learning rate 1e-2, momentum 0.9; the paper anneals the rate by hand when
the validation error plateaus, here it drops tenfold at epochs 30 and 50; dropout 0.5 in
fc6 and fc7; conv filters renormalized to RMS 0.1; 70 epochs; 224 crops and flips of the
256 image for training, 10 crops for evaluation. Weight decay 5e-4 is Krizhevsky et al.'s.

Run (many GPU-days):

    python scripts/train.py --config zfnet_imagenet --workdir outputs/zfnet --data-dir DIR

Expected (paper, Table 2, one net): 38.4% top-1 and 16.5% top-5 validation error; not
reproduced here.
"""

from jaxvis.configs import Config


def get_config() -> Config:
    return Config(name="zfnet_imagenet", model="zfnet", dataset="imagenet2012", eval_split="validation",
                  optimizer="sgd", learning_rate=1e-2, momentum=0.9, schedule="step", decay_epochs=(30, 50),
                  weight_decay=5e-4, filter_radius=0.1, num_epochs=70, batch_size=128, eval_batch_size=50,
                  augment=True, ten_crop_eval=True, eval_every_epochs=5, log_every_steps=200,
                  checkpoint_every_steps=5000)
