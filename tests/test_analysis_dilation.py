"""The dilation study's parts refuse bad input with what was expected and what was given
(their numbers are tested in test_dilation.py)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxvis import configs, models
from jaxvis.analysis import dilation

SMALL = models.build("mnist_cnn", widths=(2, 2), hidden=4)
P = SMALL.init(jax.random.key(0))
LEARNED = dilation.LearnedDilation(SMALL, (1, 2))
STRIDED = models.Model("strided", (models.conv("conv1", 2, 3, stride=2, padding=1), models.relu("relu1")), (9, 9, 1))
K = jnp.ones((3, 3, 1, 2))
X = jnp.ones((1, 8, 8, 1))
MAPS = np.ones((2, 4, 5), np.float32)
PIXELS = np.zeros((2, 28, 28, 1), np.uint8)
LABELS = np.array([1, 2])


def representations(images=PIXELS, labels=LABELS, **kwargs):
    return dilation.representations(SMALL, P, images, labels, **kwargs)


BAD_INPUTS = [
    # factors and layers
    ("factor-zero", lambda: dilation.check_dilations(SMALL, [1, 0]),
     r"dilation factor 0 for layer 'conv1': it must be an integer >= 1"),
    ("factor-fraction", lambda: dilation.check_dilations(SMALL, [1.5]),
     r"dilation factor 1.5 for layer 'conv1': it must be an integer >= 1"),
    ("factor-spans-beyond-map", lambda: dilation.check_dilations(SMALL, [1, 8], ["conv4"]),
     r"dilation factor 8 for layer 'conv4': its 3x3 kernel then spans 17x17 pixels, more than its 14x14 input map"),
    ("relu-layer", lambda: dilation.check_dilations(SMALL, [1], ["relu1"]),
     r"layer 'relu1' of mnist_cnn is a relu layer; only conv layers are dilated"),
    ("no-factors", lambda: dilation.check_dilations(SMALL, []), r"give at least one dilation factor"),
    ("unknown-layer", lambda: dilation.check_dilations(SMALL, [1], ["conv9"]), r"unknown layer of mnist_cnn 'conv9'"),
    # the mixture
    ("mixture-weights-per-factor", lambda: dilation.mixture_conv2d(X, K, jnp.zeros(2), jnp.ones(3), (1, 2)),
     r"weights must have shape \(2,\), one per dilation factor, got \(3,\)"),
    ("mixture-even-kernel", lambda: dilation.mixture_conv2d(X, jnp.ones((2, 2, 1, 2)), jnp.zeros(2), jnp.ones(2), (1, 2)),
     r"kernel must be HWIO with odd height and width, got shape \(2, 2, 1, 2\)"),
    ("mixture-factor-zero", lambda: dilation.mixture_conv2d(X, K, jnp.zeros(2), jnp.ones(2), (0, 1)),
     r"dilations must be integers >= 1, at least one, got \(0, 1\)"),
    ("mixture-bias-shape", lambda: dilation.mixture_conv2d(X, K, jnp.zeros(3), jnp.ones(2), (1, 2)),
     r"bias must have shape \(2,\), one per output, got \(3,\)"),
    ("expand-weights-per-factor", lambda: dilation.expand_kernel(K, jnp.ones(1), (1, 2)),
     r"weights must have shape \(2,\), one per dilation factor, got \(1,\)"),
    ("expand-no-factors", lambda: dilation.expand_kernel(K, jnp.ones(0), ()),
     r"dilations must be integers >= 1, at least one, got \(\)"),
    # LearnedDilation
    ("learned-base-not-a-model", lambda: dilation.LearnedDilation("mnist_cnn"),
     r"LearnedDilation needs a Model as base, got str"),
    ("learned-factors-repeat", lambda: dilation.LearnedDilation(SMALL, (1, 2, 2)),
     r"dilation factors must be distinct, got \(1, 2, 2\)"),
    ("learned-strided-layer", lambda: dilation.LearnedDilation(STRIDED, (1, 2)),
     r"layer 'conv1' of strided must have an odd kernel, stride 1, dilation 1 and padding kernel // 2 .*stride \(2, 2\)"),
    ("learned-int-key", lambda: LEARNED.init(0), r"key must be a JAX PRNG key .*got int 0"),
    ("learned-zero-temperature", lambda: LEARNED.weights(LEARNED.init(jax.random.key(0)), temperature=0),
     r"temperature must be a finite number > 0, got int 0"),
    ("learned-plain-params", lambda: LEARNED.weights(P),
     r"params must be LearnedDilation parameters with logits for \['conv1', 'conv2', 'conv3', 'conv4'\], got dict "
     r"with logits for None"),
    ("learned-picks-plain-params", lambda: LEARNED.picks(P), r"params must be LearnedDilation parameters"),
    # Search and train_learned
    ("search-fraction-above-one", lambda: dilation.Search(fraction=1.5),
     r"search fraction must be a finite number >= 0 and <= 1, got float 1.5"),
    ("search-fraction-text", lambda: dilation.Search(fraction="half"), r"Search.fraction must be a float, got str 'half'"),
    ("search-temperature-zero", lambda: dilation.Search(temperature=(1.0, 0.0)),
     r"temperature \(start, end\) must be a finite number > 0, got float 0.0"),
    ("search-temperature-one-number", lambda: dilation.Search(temperature=1.0),
     r"temperature must be \(start, end\), both > 0, got 1.0"),
    ("search-entropy-negative", lambda: dilation.Search(entropy_weight=-1.0),
     r"entropy_weight must be a finite number >= 0, got float -1.0"),
    ("search-learning-rate-zero", lambda: dilation.Search(learning_rate=0.0),
     r"learning_rate must be a finite number > 0, got float 0.0"),
    ("search-record-every-fraction", lambda: dilation.Search(record_every=2.5),
     r"Search.record_every must be an int, got float 2.5"),
    ("search-no-factors", lambda: dilation.Search(dilations=()), r"dilations must be integers >= 1, at least one, got \(\)"),
    ("train-learned-config-name", lambda: dilation.train_learned("mnist_cnn", "/nonexistent"),
     r"config must be a Config \(jaxvis.configs.get\), got str"),
    ("train-learned-search-dict", lambda: dilation.train_learned(configs.get("mnist_cnn"), "/nonexistent", {}),
     r"search must be a Search, got dict"),
    # measures of saliency maps
    ("stroke-mass-one-map", lambda: dilation.stroke_mass(MAPS[0], MAPS[0]),
     r"maps must be saliency maps \(N, H, W\) with N >= 1 and H, W >= 1, got shape \(4, 5\)"),
    ("stroke-mass-pixels-shape", lambda: dilation.stroke_mass(MAPS, MAPS[:1]),
     r"pixels must have the maps' shape \(2, 4, 5\), got \(1, 4, 5\)"),
    ("stroke-mass-negative-map", lambda: dilation.stroke_mass(-MAPS, MAPS),
     r"maps must be non-negative \(a saliency map's magnitude\), got a minimum of -1"),
    ("stroke-mass-threshold-nan", lambda: dilation.stroke_mass(MAPS, MAPS, np.nan),
     r"threshold must be a finite number, got float nan"),
    ("spread-nan-map", lambda: dilation.spread(np.where(MAPS > 0, np.nan, MAPS)),
     r"maps must be finite, got 40 non-finite values"),
    ("entropy-no-maps", lambda: dilation.entropy(MAPS[:0]),
     r"maps must be saliency maps \(N, H, W\) with N >= 1 and H, W >= 1, got shape \(0, 4, 5\)"),
    ("correlation-one-pixel-wide", lambda: dilation.neighbour_correlation(MAPS[:, :, :1]),
     r"maps must be saliency maps \(N, H, W\) with N >= 1 and H, W >= 2, got shape \(2, 4, 1\)"),
    # representations
    ("representations-three-channels", lambda: representations(np.zeros((2, 28, 28, 3), np.uint8)),
     r"images must have 1 channels \(NHWC, channels last\), got shape \(2, 28, 28, 3\)"),
    ("representations-labels-length", lambda: representations(labels=LABELS[:1]),
     r"labels must have shape \(2,\), one per image, got \(1,\)"),
    ("representations-label-too-large", lambda: representations(labels=np.array([1, 10])),
     r"label out of range: expected 0 <= label < 10, got \[10\]"),
    ("representations-normalized-images", lambda: representations(np.full((2, 28, 28, 1), -0.4, np.float32)),
     r"images must be at least one image of pixels in \[0, 1\] \(or uint8\), got shape \(2, 28, 28, 1\) with values "
     r"from -0.4 to -0.4"),
    ("representations-int32-images", lambda: representations(PIXELS.astype(np.int32)),
     r"images must be uint8 in \[0, 255\] or pixels in \[0, 1\], got dtype int32"),
    ("representations-deletion-steps-zero", lambda: representations(deletion_steps=0),
     r"deletion_steps must be an integer >= 1, got 0"),
    ("representations-unknown-preset", lambda: representations(class_model_preset="simonian"),
     r"unknown class_model_preset 'simonian'.*Did you mean 'simonyan'"),
    ("representations-class-model-steps-zero", lambda: representations(class_model_steps=0),
     r"class_model_steps must be None or an integer >= 1, got 0"),
    ("representations-stroke-threshold", lambda: representations(stroke_threshold=2.0),
     r"stroke_threshold must be a finite number >= 0 and <= 1, got float 2.0"),
    # statistics
    ("holm-p-above-one", lambda: dilation.holm([0.5, 1.5]),
     r"p_values must be a non-empty list of p-values in \[0, 1\] \(or NaN\), got \[0.5, 1.5\]"),
    ("holm-no-p-values", lambda: dilation.holm([]), r"p_values must be a non-empty list of p-values.*got \[\]"),
    ("holm-infinite", lambda: dilation.holm([0.1, np.inf]), r"p_values must be a non-empty list .*got \[0.1, inf\]"),
    ("pick-no-options", lambda: dilation.pick_agreement_p([1], 0), r"options must be an integer >= 1, got 0"),
    ("pick-negative-count", lambda: dilation.pick_agreement_p([2, -1], 4),
     r"each count \(seeds per choice\) must be an integer >= 0, got -1"),
    ("pick-fractional-count", lambda: dilation.pick_agreement_p([1.5], 4),
     r"each count \(seeds per choice\) must be an integer >= 0, got 1.5"),
    ("pick-no-counts", lambda: dilation.pick_agreement_p([], 4),
     r"counts must be a non-empty list of integers >= 0 \(seeds per choice\), got \[\]"),
    ("pick-more-counts-than-options", lambda: dilation.pick_agreement_p([1, 1, 1], 2),
     r"counts has 3 entries; expected at most one per option \(2\)"),
    ("pick-too-many-seeds", lambda: dilation.pick_agreement_p([20, 0, 0, 0], 4),
     r"20 seeds over 4 options make 4\*\*20 choices to enumerate; expected at most 1e\+07"),
]


@pytest.mark.parametrize("call, message", [case[1:] for case in BAD_INPUTS], ids=[case[0] for case in BAD_INPUTS])
def test_bad_input_is_a_value_error_saying_expected_and_given(call, message):
    with pytest.raises(ValueError, match=message):
        call()
