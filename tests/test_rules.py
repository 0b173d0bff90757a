"""Each ReLU backward rule against its formula (Simonyan et al. Sec. 4; Springenberg et al.)."""

import jax
import numpy as np
import pytest

from jaxvis import rules

X = np.array([-2.0, -1.0, 0.0, 0.5, 1.0, 3.0], np.float32)
R = np.array([1.0, -1.0, 2.0, -3.0, 4.0, 0.0], np.float32)  # the signal arriving from above

EXPECTED = {
    "gradient": np.where(X > 0, R, 0),
    "deconvnet": np.maximum(R, 0),
    "guided": np.where(X > 0, np.maximum(R, 0), 0),
}


@pytest.mark.parametrize("rule", sorted(rules.RULES))
@pytest.mark.parametrize("jit", [False, True])
def test_backward_rule_matches_formula(rule, jit):
    fn = rules.get(rule)
    fn = jax.jit(fn) if jit else fn
    out, pullback = jax.vjp(fn, X)
    np.testing.assert_array_equal(np.asarray(out), np.maximum(X, 0))  # the forward is always a ReLU
    np.testing.assert_array_equal(np.asarray(pullback(R)[0]), EXPECTED[rule])


def test_gradient_rule_equals_autodiff_of_relu_away_from_zero():
    x = X[X != 0]
    g = jax.grad(lambda v: (rules.gradient(v) * np.arange(len(v))).sum())(x)
    g_ref = jax.grad(lambda v: (jax.nn.relu(v) * np.arange(len(v))).sum())(x)
    np.testing.assert_array_equal(np.asarray(g), np.asarray(g_ref))


def test_unknown_rule_names_the_valid_ones():
    with pytest.raises(ValueError, match=r"unknown rule 'guidded'.*'deconvnet'.*Did you mean 'guided'"):
        rules.get("guidded")
