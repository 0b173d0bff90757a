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


# --- Bad input --------------------------------------------------------------------------------


@pytest.mark.parametrize("call,message", [
    (lambda m, p: synthesis.class_models(m, p, classes=[3, 10]),
     r"class out of range: expected 0 <= class < 10, got \[10\]"),
    (lambda m, p: synthesis.class_models(m, p, l2=-0.5), "l2 must be >= 0, got -0.5"),
    (lambda m, p: synthesis.class_models(m, p, steps=0), "steps must be an integer >= 1, got 0"),
    (lambda m, p: synthesis.class_models(m, p, preset="yosinski5"), "unknown preset 'yosinski5'"),
    (lambda m, p: synthesis.invert(m, p, jnp.zeros((1, 28, 28, 1)), "relu9"), "unknown layer of mnist_cnn 'relu9'"),
])
def test_bad_input_is_a_value_error_naming_it(call, message):
    model = models.build("mnist_cnn", widths=(2, 2), hidden=4)
    with pytest.raises(ValueError, match=message):
        call(model, None)
