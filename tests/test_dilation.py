"""jaxvis.analysis.dilation and scripts/dilation_study.py against lax convolutions at one
dilation, a layer-by-layer forward pass, the fixed-factor training run, hand-made maps and
hand-computed statistics; bad factors; the quick study (factors 1 and 2) end to end."""

import json
import os
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import rel_err
from jax import lax

from jaxvis import checkpoint, models
from jaxvis.analysis import dilation

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
import dilation_study  # noqa: E402

DIMS = ("NHWC", "HWIO", "NHWC")
SMALL = models.mnist_cnn(widths=(4, 8), hidden=16)


def lax_conv(x, kernel, d: int, pad: int):
    """The oracle: one cross-correlation at dilation ``d``, straight from lax."""
    return lax.conv_general_dilated(x, kernel, (1, 1), ((pad, pad), (pad, pad)), rhs_dilation=(d, d),
                                    dimension_numbers=DIMS)


def random_params(learned: dilation.LearnedDilation, logits_LD) -> dict:
    """Random network parameters of the shapes ``init`` gives (without compiling it) and these logits."""
    shapes = jax.eval_shape(learned.init, jax.random.key(0))["network"]
    rng = np.random.default_rng(5)  # numpy: drawing with jax.random would compile a program per shape
    network = jax.tree.map(lambda s: jnp.asarray(0.3 * rng.normal(size=s.shape), jnp.float32), shapes)
    return {"network": network, "logits": dict(zip(learned.layers, jnp.asarray(logits_LD, jnp.float32)))}


@pytest.fixture(scope="module")
def conv_inputs():
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.normal(size=(2, 13, 14, 3)), jnp.float32)
    kernel = jnp.asarray(rng.normal(size=(3, 3, 3, 5)), jnp.float32)
    bias = jnp.asarray(rng.normal(size=5), jnp.float32)
    return x, kernel, bias


# --- The mixture of dilations --------------------------------------------------------------


@pytest.mark.parametrize("index", range(4))
def test_one_hot_mixture_equals_lax_conv_at_that_dilation(conv_inputs, index):
    x, kernel, bias = conv_inputs
    d = dilation.DILATIONS[index]
    expected = lax_conv(x, kernel, d, d) + bias.reshape(1, 1, 1, -1)
    one_hot = jnp.eye(4)[index]
    got = dilation.mixture_conv2d(x, kernel, bias, one_hot, dilation.DILATIONS)
    dense = lax_conv(x, dilation.expand_kernel(kernel, one_hot, dilation.DILATIONS), 1, 4) + bias.reshape(1, 1, 1, -1)
    assert rel_err(got, expected) < 1e-6, f"mixture at d={d}: {rel_err(got, expected):.2e}"
    assert rel_err(dense, expected) < 1e-5, f"expanded kernel at d={d}: {rel_err(dense, expected):.2e}"


def test_expanded_kernel_equals_weighted_sum_of_dilated_convolutions(conv_inputs):
    x, _, _ = conv_inputs
    kernel = jnp.asarray(np.random.default_rng(1).normal(size=(5, 5, 3, 2)), jnp.float32)
    weights = jnp.array([0.7, 0.3])
    expected = 0.7 * lax_conv(x, kernel, 1, 2) + 0.3 * lax_conv(x, kernel, 3, 6)
    big = dilation.expand_kernel(kernel, weights, (1, 3))
    assert big.shape == (13, 13, 3, 2)
    got = lax_conv(x, big, 1, 6)
    assert rel_err(got, expected) < 1e-5, f"{rel_err(got, expected):.2e}"
    # 25 taps at d=1 and 25 at d=3 share only the centre: 49 non-zero positions
    assert int(np.count_nonzero(np.abs(np.asarray(big)).sum(axis=(2, 3)))) == 49


def test_learned_forward_equals_layer_by_layer_mixture():
    tiny = models.Model("tiny", (models.conv("conv1", 3, 3, padding=1), models.relu("relu1"),
                                 models.conv("conv2", 4, 3, padding=1), models.relu("relu2"),
                                 models.max_pool("pool1", 2), models.flatten(), models.dense("fc3", 5)), (10, 10, 2))
    factors = (1, 2, 3)
    learned = dilation.LearnedDilation(tiny, factors)
    rng = np.random.default_rng(1)
    params = random_params(learned, rng.normal(size=(2, 3)))
    net, temperature = params["network"], 0.5
    x = jnp.asarray(rng.normal(size=(3, 10, 10, 2)), jnp.float32)

    def mix(h, name):
        w = jax.nn.softmax(params["logits"][name] / temperature)
        return sum(w[i] * lax_conv(h, net[name]["kernel"], d, d) for i, d in enumerate(factors)) \
            + net[name]["bias"].reshape(1, 1, 1, -1)

    @jax.jit
    def oracle(x):
        h = jax.nn.relu(mix(jax.nn.relu(mix(x, "conv1")), "conv2"))
        h = h.reshape(3, 5, 2, 5, 2, 4).max(axis=(2, 4)).reshape(3, -1)
        return h @ net["fc3"]["kernel"] + net["fc3"]["bias"][None]

    got = jax.jit(lambda p, x: learned.apply(p, x, temperature=temperature)[0])(params, x)
    expected = oracle(x)
    assert learned.model.layer("conv2").kernel == (7, 7)
    assert rel_err(got, expected) < 1e-5, f"{rel_err(got, expected):.2e}"


def test_commit_gives_the_fixed_network_of_the_strongest_factor():
    learned = dilation.LearnedDilation(SMALL)
    params = random_params(learned, np.tile([0.0, 0.0, 9.0, 0.0], (4, 1)))  # factor 3 everywhere
    model, net = learned.commit(params)
    fixed = models.mnist_cnn(3, widths=(4, 8), hidden=16)
    assert model.layers == fixed.layers
    x = jnp.asarray(np.random.default_rng(2).normal(size=(2, 28, 28, 1)), jnp.float32)
    expected = jax.jit(lambda p, x: fixed.apply(p, x)[0])(net, x)
    # a nearly one-hot mixture (temperature 0.01) is that network too
    soft = jax.jit(lambda p, x: learned.apply(p, x, temperature=0.01)[0])(params, x)
    assert rel_err(soft, expected) < 1e-4, f"{rel_err(soft, expected):.2e}"


# --- Measures and statistics -----------------------------------------------------------------


def test_stroke_mass_on_a_hand_made_map():
    pixels = np.zeros((2, 4, 4), np.float32)
    pixels[:, 1, 1:3] = 1.0  # two stroke pixels
    pixels[:, 2, 2] = 0.4  # ink below the threshold
    maps = np.zeros((2, 4, 4), np.float32)
    maps[0, 1, 1], maps[0, 1, 2], maps[0, 2, 2], maps[0, 0, 0] = 3.0, 1.0, 2.0, 2.0  # 4 of 8 on strokes
    maps[1] = 1.0  # flat: 2 of 16 pixels
    np.testing.assert_allclose(dilation.stroke_mass(maps, pixels), [0.5, 2 / 16], rtol=1e-6)


def test_spread_and_entropy_on_hand_made_maps():
    maps = np.zeros((3, 6, 8), np.float32)
    maps[0, 2, 3] = 5.0  # one pixel
    maps[1, 1, 1] = maps[1, 1, 5] = 2.0  # two pixels 4 apart: 2 from their centroid, 1 bit
    maps[2] = 1.0  # flat
    rows, cols = np.mgrid[0:6, 0:8]
    flat_spread = np.mean(np.hypot(rows - 2.5, cols - 3.5))  # an explicit mean over the pixels
    np.testing.assert_allclose(dilation.spread(maps), [0.0, 2.0, flat_spread], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(dilation.entropy(maps), [0.0, 1.0, np.log2(48)], rtol=1e-5, atol=1e-6)


def test_neighbour_correlation_against_numpy_and_hand_made_maps():
    rows, cols = np.mgrid[0:6, 0:8].astype(np.float32)
    noise = np.random.default_rng(3).normal(size=(6, 8)).astype(np.float32)
    maps = np.stack([cols, (rows + cols) % 2, noise, np.ones((6, 8), np.float32)])  # ramp, checkerboard, noise, flat
    right = np.corrcoef(noise[:, :-1].ravel(), noise[:, 1:].ravel())[0, 1]
    down = np.corrcoef(noise[:-1].ravel(), noise[1:].ravel())[0, 1]
    np.testing.assert_allclose(dilation.neighbour_correlation(maps), [1.0, -1.0, (right + down) / 2, 0.0],
                               rtol=1e-5, atol=1e-6)


def test_holm_against_a_hand_computation():
    # sorted 0.005, 0.01, 0.03, 0.04 times 4, 3, 2, 1 = 0.02, 0.03, 0.06, 0.04 -> running max 0.02, 0.03, 0.06, 0.06
    np.testing.assert_allclose(dilation.holm([0.01, 0.04, 0.03, 0.005]), [0.03, 0.06, 0.06, 0.02], rtol=1e-12)
    np.testing.assert_allclose(dilation.holm([0.5, 0.9]), [1.0, 1.0])


def test_pick_agreement_probability_by_hand():
    # 4 factors, 2 seeds: they agree with probability 1/4; 3 seeds all agree: 4 / 64
    assert dilation.pick_agreement_p([2, 0, 0, 0], 4) == pytest.approx(1 / 4)
    assert dilation.pick_agreement_p([0, 3, 0, 0], 4) == pytest.approx(4 / 64)
    assert dilation.pick_agreement_p([1, 1, 0, 0], 4) == 1.0


# --- Bad input -------------------------------------------------------------------------------


@pytest.mark.parametrize("factors, message", [
    ((0,), "dilation factor 0 for layer 'conv1': it must be an integer >= 1"),
    ((1, -2), "dilation factor -2 for layer 'conv1'"),
    ((2.5,), "dilation factor 2.5 for layer 'conv1'"),
    ((1, 7), "dilation factor 7 for layer 'conv3': its 3x3 kernel then spans 15x15 pixels, more than its 14x14"),
])
def test_bad_factors_name_the_factor_and_the_layer(factors, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        dilation.check_dilations(SMALL, factors)
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        dilation.LearnedDilation(SMALL, factors)


def test_study_refuses_a_bad_factor_before_any_work(tmp_path):
    with pytest.raises(ValueError, match="dilation factor 8 for layer 'conv3'"):
        dilation_study.main(["--quick", "--workdir", str(tmp_path), "--dilations", "1", "8", "--no-progress"])
    assert not any(tmp_path.iterdir())


# --- The quick study, and training a learned dilation against its fixed runs -------------------


# Subprocesses at XLA's lowest optimization level: the programs are tiny, compiling them is the cost
ENV = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{ROOT / 'scripts'}",
       "XLA_FLAGS": "--xla_backend_optimization_level=0"}


def python(*args: str) -> str:
    done = subprocess.run([sys.executable, *args], env=ENV, capture_output=True, text=True, timeout=1500)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


# One process (it sets JAX's compilation cache) runs the quick study at factors 1 and 2, then a
# learned run without search (fraction 0) from the study's settings, then the study again: the
# second study and the learned run reuse the first's compiled programs
DRIVER = """
import json, shutil, sys
import dilation_study
from jaxvis.analysis import dilation
workdir = sys.argv[1]
study = ["--quick", "--dilations", "1", "2", "--workdir", workdir, "--results", workdir + "/results", "--no-progress"]
dilation_study.main(study)
shutil.copy(workdir + "/results/study.json", workdir + "/first_study.json")
config = dilation_study.build_config(json.load(open(workdir + "/settings.json")), 1, 0)
r = dilation.train_learned(config, workdir + "/no_search", dilation.Search(dilations=(1, 2), fraction=0.0),
                           progress=False)
json.dump({"picks": r["picks"], "top1": r["eval"]["top1"]}, open(workdir + "/no_search.json", "w"))
dilation_study.main(study)
"""


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("study")
    python("-c", DRIVER, str(workdir))
    return workdir, json.loads((workdir / "first_study.json").read_text())


def test_quick_study_writes_tables_figures_and_statistics(quick):
    workdir, study = quick
    for name in ("tables.md", "accuracy.png", "saliency.png", "class_models.png", "measures.png",
                 "learned_weights.png"):
        assert (workdir / "results" / name).stat().st_size > 0, name
    st = study["statistics"]
    assert sorted(st["accuracy"]) == ["1", "2"]
    assert all(len(a["per_seed"]) == 2 and 0 <= a["mean"] <= 1 for a in st["accuracy"].values())
    (row,) = st["pairwise_welch_holm"]
    assert 0 <= row["p"] <= row["p_holm"] <= 1
    # the factor changes the receptive field, not the parameter count
    assert st["accuracy"]["1"]["num_params"] == st["accuracy"]["2"]["num_params"]
    for d in (1, 2):
        expected = models.mnist_cnn(d).fields["pool2"].size[0]
        assert st["accuracy"][str(d)]["receptive_field"]["pool2"][0] == expected
    for measure in dilation.MEASURES:
        assert np.isfinite(st["measures"][measure]["by_factor"]["1"]["mean"]), measure
    assert 0 <= study["runs"]["fixed"]["1"][0]["measures"]["stroke_mass"] <= 1


def test_learned_runs_pick_their_strongest_factor_and_restore_as_that_network(quick):
    workdir, study = quick
    for run in study["runs"]["learned"]:
        assert set(run["picks"]) == {"conv1", "conv2", "conv3", "conv4"}
        for name, d in run["picks"].items():
            assert d == (1, 2)[int(np.argmax(run["weights"][name]))]
            assert abs(sum(run["weights"][name]) - 1) < 1e-5
    model, _, card = checkpoint.restore_model(workdir / "learned/seed0/checkpoints")
    picks = study["runs"]["learned"][0]["picks"]
    assert {n: model.layer(n).dilation for n in picks} == {n: (d, d) for n, d in picks.items()}
    assert card["step"] == study["runs"]["learned"][0]["steps"]


def test_learned_run_without_search_reproduces_the_fixed_run(quick):
    """Search fraction 0 commits to the first factor at step 0: the same initialization,
    data order, dropout and optimizer as the study's fixed run at factor 1, seed 0."""
    workdir, study = quick
    learned = json.loads((workdir / "no_search.json").read_text())
    assert learned["picks"] == {f"conv{i}": 1 for i in range(1, 5)}
    assert learned["top1"] == study["runs"]["fixed"]["1"][0]["top1"]
    _, expected, _ = checkpoint.restore_model(workdir / "fixed/d1/seed0")
    _, got, _ = checkpoint.restore_model(workdir / "no_search")
    for name in expected:
        for leaf in ("kernel", "bias"):
            err = rel_err(got[name][leaf], expected[name][leaf])
            assert err < 1e-6, f"{name}.{leaf} differs from the fixed run's by {err:.2e}"


def test_quick_study_resumes_without_training_again(quick):
    workdir, study = quick
    again = json.loads((workdir / "results/study.json").read_text())
    assert again["runs"] == study["runs"]
    assert all(seconds < 1 for seconds in again["seconds_this_call"].values()), again["seconds_this_call"]
