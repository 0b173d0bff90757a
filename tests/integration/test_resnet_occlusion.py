"""Incremental occlusion on torchvision's ResNet-18 at 224x224 (random weights, batch
norm statistics away from the identity) equals full re-inference: the 16x16 occluder at
stride 16, 196 positions, logits within 1e-5 relative."""

import sys
from pathlib import Path

import jax
import numpy as np

from jaxvis import models, occlusion

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from test_resnet import random_params, rel  # noqa: E402


def test_incremental_equals_full_on_resnet18_at_224():
    model = models.build("resnet18")
    params = random_params(model, seed=11)
    x = jax.random.normal(jax.random.key(12), (1, 224, 224, 3))
    full = occlusion.sweep(model, params, x, [3], 16, 16, score="logit", layer="layer3.1.relu")
    incremental = occlusion.sweep(model, params, x, [3], 16, 16, score="logit", layer="layer3.1.relu",
                                  method="incremental")
    err = rel(incremental.score_NPQ, full.score_NPQ)
    print(f"\nresnet18 at 224: incremental vs full logits {err:.2e}, feature totals "
          f"{rel(incremental.feature_NPQ, full.feature_NPQ):.2e}")
    assert err < 1e-5 and rel(incremental.feature_NPQ, full.feature_NPQ) < 1e-5
    assert np.abs(full.score_NPQ - full.base_score_N[:, None, None]).max() > 0
