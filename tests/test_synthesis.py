"""jaxvis.synthesis: each regularizer against its numpy formula, the loop's units, jitter
and NaN handling on hand-made objectives, and class models and inversion on the shipped
MNIST network (checkpoints/mnist_cnn)."""

import dataclasses
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import rel_err

from jaxvis import checkpoint, data, models, synthesis
from jaxvis.synthesis import Settings

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def shipped():
    model, params, _ = checkpoint.restore_model(ROOT / "checkpoints" / "mnist_cnn")
    return model, params


def test_every_class_model_of_the_shipped_network_reaches_probability_099(shipped):
    model, params = shipped
    run, probs = synthesis.class_models(model, params)
    assert (np.asarray(run.stopped_at) == -1).all()
    assert float(probs.min()) >= 0.99, np.round(np.asarray(probs), 4)
    scores = model.apply(params, run.images)[0]
    assert (np.argmax(np.asarray(scores), axis=1) == np.arange(10)).all()


def test_inversion_lowers_its_objective_and_reports_the_feature_error(shipped):
    model, params = shipped
    images, _ = next(iter(data.open_dataset("mnist_sample", "test").batches(2)))
    x = model.normalize(images)
    run, error = synthesis.invert(model, params, x, "pool1", steps=80)
    losses = np.asarray(run.losses)
    assert (losses[-1] < 0.3 * losses[0]).all(), losses[[0, -1]]
    assert (losses[-10:].mean(axis=0) < losses[-40:-30].mean(axis=0)).all()
    target = model.apply(params, x, until="pool1")[0]
    got = model.apply(params, run.images, until="pool1")[0]
    expected = np.sqrt(np.sum(np.square(got - target), axis=(1, 2, 3)) / np.sum(np.square(target), axis=(1, 2, 3)))
    assert rel_err(error, expected) < 1e-5
    assert float(error.max()) < 0.5, error


# --- Regularizers against their formulas ----------------------------------------------------


@pytest.fixture
def image():
    return np.random.default_rng(0).normal(0, 40, (7, 9, 3)).astype(np.float32)


def test_alpha_norm_and_total_variation_match_their_formulas(image):
    u = image.astype(np.float64)
    assert rel_err(synthesis.alpha_norm(image, 6.0), np.sum(np.abs(u / 128) ** 6) / 63) < 1e-5
    for beta in (2.0, 1.5):
        tv = sum(((u[i, j + 1, c] - u[i, j, c]) ** 2 + (u[i + 1, j, c] - u[i, j, c]) ** 2) ** (beta / 2)
                 for i in range(6) for j in range(8) for c in range(3))
        expected = tv / (63 * (128 / 6.5) ** beta)
        assert rel_err(synthesis.total_variation(image, beta), expected) < 1e-5, beta


def test_total_variation_has_a_finite_gradient_on_a_flat_image():
    grad = jax.grad(synthesis.total_variation)(jnp.zeros((5, 5, 1)), 1.0)
    assert np.isfinite(np.asarray(grad)).all()


def test_blur_matches_a_numpy_gaussian_convolution(image):
    width = 0.8
    radius = int(np.ceil(3 * width))
    offsets = np.arange(-radius, radius + 1)
    taps = np.exp(-0.5 * (offsets / width) ** 2)
    taps /= taps.sum()
    expected = np.zeros(image.shape)
    for i in range(7):
        for j in range(9):
            for a, ta in zip(offsets, taps):
                for b, tb in zip(offsets, taps):
                    if 0 <= i + a < 7 and 0 <= j + b < 9:
                        expected[i, j] += ta * tb * image[i + a, j + b]
    assert rel_err(synthesis.blur(image, width), expected) < 1e-5


def test_yosinski_projections_in_order_match_numpy(image):
    grad = np.random.default_rng(1).normal(size=image.shape).astype(np.float32)
    s = Settings(steps=1, learning_rate=1.0, decay=0.1, norm_percentile=30.0, contribution_percentile=40.0,
                 clip_pixels=True)
    low, high = -33.0 * np.ones((1, 1, 3)), 222.0 * np.ones((1, 1, 3))
    got = synthesis.project(s, image, grad, 0, low, high)
    u = 0.9 * image.astype(np.float64)
    norm = np.sqrt(np.sum(u ** 2, axis=-1))
    u = np.where((norm >= np.percentile(norm, 30))[..., None], u, 0.0)
    contribution = np.abs(np.sum(u * grad, axis=-1))
    u = np.where((contribution >= np.percentile(contribution, 40))[..., None], u, 0.0)
    expected = np.clip(u, -33.0, 222.0)
    assert rel_err(got, expected) < 1e-5
    assert (np.asarray(got) == 0).all(axis=-1).mean() > 0.35  # the clipping did something


def test_blur_runs_every_n_steps(image):
    s = Settings(steps=1, learning_rate=1.0, blur_width=1.0, blur_every=3)
    blurred = synthesis.blur(image, 1.0)
    for step, expected in ((0, image), (1, image), (2, blurred), (5, blurred)):
        assert rel_err(synthesis.project(s, image, image, step, 0.0, 0.0), expected) < 1e-6, step


def test_learning_rate_schedules():
    np.testing.assert_allclose(Settings(steps=400, learning_rate=2.0, schedule="steps").learning_rates(),
                               [2.0] * 100 + [0.2] * 200 + [0.02] * 100, rtol=1e-6)
    np.testing.assert_allclose(Settings(steps=4, learning_rate=8.0, schedule="ramp").learning_rates(),
                               [2.0, 4.0, 6.0, 8.0], rtol=1e-6)


# --- The loop on hand-made objectives --------------------------------------------------------

PLAIN = models.Model("plain", (models.flatten(), models.dense("fc", 2)), (4, 5, 2), mean=(0.5, 0.2),
                     std=(0.25, 0.5))


@dataclasses.dataclass(frozen=True)
class Linear:
    """``-sum(weights * x)``: its gradient is known everywhere."""

    model: models.Model
    pixel: tuple[int, int] = (1, 2)

    def __call__(self, params, x_HWC, target):
        return -x_HWC[self.pixel].sum() * target


@dataclasses.dataclass(frozen=True)
class BlowsUp:
    """NaN once any pixel of the normalized image passes ``limit``."""

    model: models.Model
    limit: float = 1.0

    def __call__(self, params, x_HWC, target):
        return jnp.where(x_HWC.max() > self.limit, jnp.nan, -jnp.sum(x_HWC) * target)


def test_one_step_moves_the_normalized_image_as_the_papers_units_say():
    # a step of lr on u = 255 std x is a step of lr / (255 std)^2 on x
    s = Settings(steps=1, learning_rate=50.0)
    run = synthesis.optimize(Linear(PLAIN), {}, jnp.zeros((2, 4, 5, 2)), jnp.array([1.0, 3.0]), s)
    expected = np.zeros((2, 4, 5, 2))
    expected[:, 1, 2] = np.array([1.0, 3.0])[:, None] * 50.0 / (255 * np.array([0.25, 0.5])) ** 2
    assert rel_err(run.images, expected) < 1e-6


def test_jitter_moves_the_gradient_within_the_jitter_window():
    s = Settings(steps=30, learning_rate=1.0, jitter=2)
    run = synthesis.optimize(Linear(PLAIN), {}, jnp.zeros((1, 4, 5, 2)), jnp.array([1.0]), s, jax.random.key(3))
    changed = np.argwhere(np.abs(np.asarray(run.images[0])).sum(-1) > 0)
    rows = (changed[:, 0] - 1 + 2) % 4 - 2  # circular offsets from the pixel (1, 2)
    cols = (changed[:, 1] - 2 + 2) % 5 - 2
    assert len(changed) >= 5, changed
    assert np.abs(rows).max() <= 2 and np.abs(cols).max() <= 2


def test_a_nan_stops_the_item_names_the_step_and_keeps_the_last_finite_image():
    # item 0 gains 10 / (255 * 0.25)^2 = 0.00246 per step in channel 0: after 407 steps it passes 1.0,
    # so the loss at step 407 is NaN; the image it was evaluated at is the last finite one
    s = Settings(steps=500, learning_rate=10.0)
    with pytest.warns(RuntimeWarning, match="item 0: the loss or the image became NaN or infinite at step 407 of 500"):
        run = synthesis.optimize(BlowsUp(PLAIN), {}, jnp.zeros((2, 4, 5, 2)), jnp.array([1.0, 0.1]), s)
    np.testing.assert_array_equal(run.stopped_at, [407, -1])
    assert 1.0 < float(run.images[0].max()) < 1.0 + 0.0025
    assert np.isnan(np.asarray(run.losses)[407:, 0]).all() and np.isfinite(np.asarray(run.losses)[:407]).all()


def test_a_start_with_zero_gradient_is_reported_and_noise_gets_past_it():
    # zero biases: at the zero image every fc1 output is 0 and every ReLU is off
    model = models.Model("dead", (models.flatten(), models.dense("fc1", 4), models.relu("relu1"),
                                  models.dense("fc2", 3)), (4, 5, 1))
    params = model.init(jax.random.key(0))
    with pytest.warns(RuntimeWarning, match=r"classes \[0, 1\]: the image never changed"):
        synthesis.class_models(model, params, classes=[0, 1], steps=3)
    run, _ = synthesis.class_models(model, params, classes=[0, 1], steps=3, init_std=20.0)
    assert (np.abs(np.asarray(run.losses[-1] - run.losses[0])) > 0).all()


# --- Chunking to a memory budget --------------------------------------------------------------


def test_chunked_class_models_equal_one_call_and_the_chunk_count_follows_the_estimate(monkeypatch):
    model = models.build("mnist_cnn", widths=(2, 4), hidden=8)
    params = model.init(jax.random.key(0))
    # per class: forward and backward, 2 x 4 bytes x (input 784 + conv1-relu2 4 x 1568 + pool1 392 + conv3-relu4
    # 4 x 784 + pool2, flatten 196 each + fc5, relu5, drop5 8 each + fc6 10), and the loop's 4 images of 784 floats
    per_class = 2 * 4 * (784 + 4 * 1568 + 392 + 4 * 784 + 2 * 196 + 3 * 8 + 10) + 4 * 4 * 784
    assert synthesis.item_bytes(model) == per_class == 100624
    calls, real = [], synthesis._optimize
    monkeypatch.setattr(synthesis, "_optimize", lambda *a: calls.append(a[3].shape[0]) or real(*a))
    kwargs = dict(steps=5, init_std=20.0, jitter=1, key=jax.random.key(3))
    whole, whole_probs = synthesis.class_models(model, params, **kwargs)
    assert calls == [10]
    calls.clear()
    chunked, chunked_probs = synthesis.class_models(model, params, memory_budget=3.5 * per_class, **kwargs)
    assert calls == [3, 3, 3, 3]  # 3 classes fit: ceil(10 / 3) calls of one size, the last one padded
    assert rel_err(chunked.images, whole.images) < 1e-5 and rel_err(chunked.losses, whole.losses) < 1e-5
    assert rel_err(chunked_probs, whole_probs) < 1e-5
    np.testing.assert_array_equal(chunked.stopped_at, whole.stopped_at)
    assert float(np.abs(np.asarray(whole.images)).max()) > 0


# --- Bad input --------------------------------------------------------------------------------

M = models.build("mnist_cnn", widths=(2, 2), hidden=4)
P = M.init(jax.random.key(0))
X = jnp.zeros((2, 28, 28, 1))
U = np.zeros((7, 9, 3), np.float32)
S = Settings(steps=2, learning_rate=1.0)
PRESETS = r"\['simonyan', 'yosinski1', 'yosinski2', 'yosinski3', 'yosinski4', 'mahendran'\]"

BAD_INPUTS = [
    # Settings: every field's type, range and finiteness
    ("settings-jitter-fraction", lambda: Settings(steps=5, learning_rate=1.0, jitter=1.5),
     r"Settings.jitter must be an int, got float 1.5"),
    ("settings-blur-every-fraction", lambda: synthesis.settings("simonyan", blur_every=2.5, blur_width=1.0),
     r"Settings.blur_every must be an int, got float 2.5"),
    ("settings-steps-float", lambda: synthesis.settings("simonyan", steps=10.0),
     r"Settings.steps must be an int, got float 10.0"),
    ("settings-steps-zero", lambda: synthesis.settings("simonyan", steps=0), r"steps must be an integer >= 1, got 0"),
    ("settings-learning-rate-zero", lambda: Settings(steps=1, learning_rate=0), r"learning_rate must be > 0, got 0"),
    ("settings-learning-rate-string", lambda: Settings(steps=1, learning_rate="fast"),
     r"Settings.learning_rate must be a float, got str 'fast'"),
    ("settings-learning-rate-nan", lambda: Settings(steps=1, learning_rate=float("nan")),
     r"learning_rate must be finite, got 1 non-finite values"),
    ("settings-l2-negative", lambda: synthesis.settings("simonyan", l2=-0.5), r"l2 must be >= 0, got -0.5"),
    ("settings-l2-infinite", lambda: synthesis.settings("simonyan", l2=float("inf")),
     r"l2 must be finite, got 1 non-finite values \(first at index \(\): inf\)"),
    ("settings-momentum-one", lambda: synthesis.settings("mahendran", momentum=1.0),
     r"momentum must be in \[0, 1\), got 1.0"),
    ("settings-decay-one", lambda: synthesis.settings("yosinski2", decay=1.0), r"decay must be in \[0, 1\), got 1.0"),
    ("settings-norm-percentile-101", lambda: synthesis.settings("yosinski1", norm_percentile=101.0),
     r"norm_percentile must be in \[0, 100\], got 101.0"),
    ("settings-contribution-percentile-negative", lambda: synthesis.settings("yosinski4", contribution_percentile=-1.0),
     r"contribution_percentile must be in \[0, 100\], got -1.0"),
    ("settings-alpha-below-one", lambda: synthesis.settings("mahendran", alpha=0.5),
     r"alpha and beta must be >= 1, got alpha=0.5, beta=2.0"),
    ("settings-unknown-schedule", lambda: synthesis.settings("simonyan", schedule="cosine"),
     r"unknown schedule 'cosine'; expected one of \['constant', 'ramp', 'steps'\]"),
    ("settings-clip-pixels-int", lambda: synthesis.settings("simonyan", clip_pixels=1),
     r"Settings.clip_pixels must be a bool, got int 1"),
    ("settings-blur-width-without-every", lambda: synthesis.settings("simonyan", blur_width=1.0),
     r"blur_width > 0 and blur_every >= 1 go together \(a blur needs both\), got blur_width=1.0, blur_every=0"),
    ("settings-jitter-negative", lambda: synthesis.settings("simonyan", jitter=-1), r"jitter must be >= 0, got -1"),
    ("settings-unknown-keyword", lambda: synthesis.settings("simonyan", jiter=2),
     r"Settings has no setting 'jiter'; its settings are \['steps', .*\]. Did you mean 'jitter'\?"),
    ("settings-unknown-preset", lambda: synthesis.settings("yosinski5"),
     r"unknown preset 'yosinski5'; expected one of " + PRESETS),
    ("settings-preset-number", lambda: synthesis.settings(3),
     r"preset must be a name in " + PRESETS + r" or Settings, got int 3"),
    # class_models
    ("class-models-no-classes", lambda: synthesis.class_models(M, P, classes=[]),
     r"classes must hold at least one class, got an empty list"),
    ("class-models-no-classes-array", lambda: synthesis.class_models(M, P, classes=np.array([], int)),
     r"classes must hold at least one class, got an empty ndarray"),
    ("class-models-class-too-large", lambda: synthesis.class_models(M, P, classes=[3, 10]),
     r"class out of range: expected 0 <= class < 10, got \[10\]"),
    ("class-models-class-negative", lambda: synthesis.class_models(M, P, classes=[-1]),
     r"class out of range: expected 0 <= class < 10, got \[-1\]"),
    ("class-models-class-fraction", lambda: synthesis.class_models(M, P, classes=[1.5]),
     r"class must be an integer, got float64 value"),
    ("class-models-classes-matrix", lambda: synthesis.class_models(M, P, classes=[[0, 1]]),
     r"classes must be a class index or a list of them, got shape \(1, 2\)"),
    ("class-models-int-key", lambda: synthesis.class_models(M, P, key=0),
     r"key must be a JAX PRNG key \(jax.random.key\(seed\) or jax.random.PRNGKey\(seed\)\), got int 0"),
    ("class-models-wrong-key-array", lambda: synthesis.class_models(M, P, key=np.zeros(3, np.uint32)),
     r"key must be a JAX PRNG key .*got ndarray of shape \(3,\), dtype uint32"),
    ("class-models-init-std-negative", lambda: synthesis.class_models(M, P, init_std=-1),
     r"init_std must be a finite number >= 0, got int -1"),
    ("class-models-init-std-nan", lambda: synthesis.class_models(M, P, init_std=float("nan")),
     r"init_std must be a finite number >= 0, got float nan"),
    ("class-models-init-std-string", lambda: synthesis.class_models(M, P, init_std="big"),
     r"init_std must be a finite number >= 0, got str 'big'"),
    ("class-models-budget-below-one-class", lambda: synthesis.class_models(M, P, memory_budget=1e4),
     r"memory_budget must hold at least one item's working set, about 8.64e\+04 bytes \(a forward and backward "
     r"pass through mnist_cnn\); got 1e\+04"),
    ("class-models-budget-nan", lambda: synthesis.class_models(M, P, memory_budget=float("nan")),
     r"memory_budget must be a finite number >= 0, got float nan"),
    ("class-models-unknown-setting", lambda: synthesis.class_models(M, P, stepss=3),
     r"Settings has no setting 'stepss'.*Did you mean 'steps'\?"),
    ("class-models-steps-zero", lambda: synthesis.class_models(M, P, steps=0), r"steps must be an integer >= 1, got 0"),
    ("class-models-unknown-preset", lambda: synthesis.class_models(M, P, preset="yosinski5"),
     r"unknown preset 'yosinski5'"),
    # invert and feature_error
    ("invert-unknown-layer", lambda: synthesis.invert(M, P, X, "relu9"), r"unknown layer of mnist_cnn 'relu9'"),
    ("invert-nan-pixel", lambda: synthesis.invert(M, P, X.at[1, 0, 0, 0].set(jnp.nan), "relu2"),
     r"images must be finite, got 1 non-finite values \(first at index \(1, 0, 0, 0\): nan\)"),
    ("invert-three-channels", lambda: synthesis.invert(M, P, jnp.zeros((2, 28, 28, 3)), "relu2"),
     r"images must have 1 channels \(NHWC, channels last\), got shape \(2, 28, 28, 3\)"),
    ("invert-no-images", lambda: synthesis.invert(M, P, X[:0], "relu2"),
     r"images must hold at least one image to invert, got shape \(0, 28, 28, 1\)"),
    ("invert-one-image-unbatched", lambda: synthesis.invert(M, P, X[0], "relu2"),
     r"images must be a batch of shape \(N, 28, 28, 1\) \(NHWC\), got an array of rank 3"),
    ("invert-int-key", lambda: synthesis.invert(M, P, X, "relu2", key=7), r"key must be a JAX PRNG key .*got int 7"),
    ("invert-init-std-negative", lambda: synthesis.invert(M, P, X, "relu2", init_std=-2.0),
     r"init_std must be a finite number >= 0, got float -2.0"),
    ("invert-budget-below-one-image", lambda: synthesis.invert(M, P, X, "relu2", memory_budget=100),
     r"memory_budget must hold at least one item's working set, about .* bytes .*; got 100"),
    ("invert-unknown-setting", lambda: synthesis.invert(M, P, X, "relu2", momentun=0.5),
     r"Settings has no setting 'momentun'.*Did you mean 'momentum'\?"),
    ("invert-all-zero-code", lambda: synthesis.invert(M, jax.tree.map(jnp.zeros_like, P), X, "relu1"),
     r"images \[0, 1\] have an all-zero code at layer 'relu1': the relative feature error is undefined"),
    ("feature-error-target-shape", lambda: synthesis.feature_error(M, P, X, jnp.ones((2, 14, 14, 2)), "relu2"),
     r"targets must be layer 'relu2''s output for each image, shape \(2, 28, 28, 2\), got \(2, 14, 14, 2\)"),
    ("feature-error-target-nan", lambda: synthesis.feature_error(M, P, X, jnp.full((2, 28, 28, 2), jnp.nan), "relu2"),
     r"targets must be finite, got 3136 non-finite values"),
    ("feature-error-unknown-layer", lambda: synthesis.feature_error(M, P, X, jnp.ones((2, 8)), "fc9"),
     r"unknown layer of mnist_cnn 'fc9'"),
    # optimize and the objectives
    ("optimize-objective-without-model", lambda: synthesis.optimize(lambda p, x, t: 0.0, P, X, jnp.zeros(2), S),
     r"objective must have a model field holding a Model or a wrapped model \(e.g. ClassScore\(model\)\), got function with model "
     r"NoneType"),
    ("optimize-start-wrong-size", lambda: synthesis.optimize(synthesis.ClassScore(M), P, jnp.zeros((2, 27, 28, 1)),
                                                              jnp.zeros(2, int), S),
     r"starting images must have shape \(N, 28, 28, 1\), got \(2, 27, 28, 1\)"),
    ("optimize-no-items", lambda: synthesis.optimize(synthesis.ClassScore(M), P, X[:0], jnp.zeros(0, int), S),
     r"starting images must hold at least one image, got shape \(0, 28, 28, 1\)"),
    ("optimize-targets-per-item", lambda: synthesis.optimize(synthesis.ClassScore(M), P, X, jnp.zeros(3, int), S),
     r"targets must have a leading axis of 2, one per item, got shape \(3,\)"),
    ("optimize-target-tree-leaf", lambda: synthesis.optimize(synthesis.ClassScore(M), P, X, {"c": jnp.int32(1)}, S),
     r"targets\['c'\] must have a leading axis of 2, one per item, got shape \(\)"),
    ("optimize-targets-nan", lambda: synthesis.optimize(synthesis.FeatureMatch(M, "fc6"), P, X,
                                                        jnp.full((2, 10), jnp.nan), S),
     r"targets must be finite, got 20 non-finite values"),
    ("optimize-settings-dict", lambda: synthesis.optimize(synthesis.ClassScore(M), P, X, jnp.zeros(2, int),
                                                          {"steps": 3}),
     r"s must be Settings \(see synthesis.settings\), got dict"),
    ("optimize-float-key", lambda: synthesis.optimize(synthesis.ClassScore(M), P, X, jnp.zeros(2, int), S, key=0.5),
     r"key must be a JAX PRNG key .*got float 0.5"),
    ("optimize-chunk-zero", lambda: synthesis.optimize(synthesis.ClassScore(M), P, X, jnp.zeros(2, int), S, chunk=0),
     r"chunk must be None or an integer >= 1, got 0"),
    ("class-score-not-a-model", lambda: synthesis.ClassScore("mnist_cnn"), r"ClassScore needs a Model or a wrapped model \(jaxvis.wrap\), got str"),
    ("feature-match-unknown-layer", lambda: synthesis.FeatureMatch(M, "pool9"), r"unknown layer of mnist_cnn 'pool9'"),
    # regularizers and projections, one image each
    ("alpha-norm-two-axes", lambda: synthesis.alpha_norm(U[..., 0], 6.0),
     r"u_HWC must be one image \(H, W, C\), got shape \(7, 9\)"),
    ("alpha-norm-alpha-below-one", lambda: synthesis.alpha_norm(U, 0.5), r"alpha must be a finite number >= 1, got float 0.5"),
    ("total-variation-beta-nan", lambda: synthesis.total_variation(U, float("nan")),
     r"beta must be a finite number >= 1, got float nan"),
    ("total-variation-batch", lambda: synthesis.total_variation(U[None], 2.0),
     r"u_HWC must be one image \(H, W, C\), got shape \(1, 7, 9, 3\)"),
    ("gaussian-kernel-zero-width", lambda: synthesis.gaussian_kernel(0), r"blur width must be a finite number > 0, got int 0"),
    ("blur-negative-width", lambda: synthesis.blur(U, -1.0), r"blur width must be a finite number > 0, got float -1.0"),
    ("blur-batch", lambda: synthesis.blur(U[None], 1.0), r"u_HWC must be one image \(H, W, C\), got shape \(1, 7, 9, 3\)"),
    ("clip-percentile-150", lambda: synthesis.clip_below_percentile(U, U[..., 0], 150.0),
     r"percentile must be a finite number >= 0 and <= 100, got float 150.0"),
    ("clip-strength-shape", lambda: synthesis.clip_below_percentile(U, U, 50.0),
     r"strength_HW must have the image's shape \(7, 9\), got \(7, 9, 3\)"),
    ("penalty-settings-dict", lambda: synthesis.penalty({"l2": 1.0}, U), r"s must be Settings .*got dict"),
    ("project-gradient-shape", lambda: synthesis.project(S, U, U[..., :1], 0, 0.0, 1.0),
     r"grad_HWC must have the image's shape \(7, 9, 3\), got \(7, 9, 1\)"),
    ("paper-scale-not-a-model", lambda: synthesis.paper_scale("mnist_cnn"), r"paper_scale needs a Model or a wrapped model \(jaxvis.wrap\), got str"),
    ("item-bytes-unknown-layer", lambda: synthesis.item_bytes(M, "relu8"), r"unknown layer of mnist_cnn 'relu8'"),
]


@pytest.mark.parametrize("call, message", [case[1:] for case in BAD_INPUTS], ids=[case[0] for case in BAD_INPUTS])
def test_bad_input_is_a_value_error_saying_expected_and_given(call, message):
    with pytest.raises(ValueError, match=message):
        call()
