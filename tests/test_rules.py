"""Each ReLU backward rule against its formula (Simonyan et al. Sec. 4; Springenberg et al.)."""

import jax
import numpy as np
import pytest

from jaxvis import models, rules

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


TINY = models.build("mnist_cnn", widths=(2, 2), hidden=4)
VALID = r"expected one of \['gradient', 'deconvnet', 'guided'\]"

BAD_INPUTS = [
    ("typo", lambda: rules.get("guidded"), r"unknown rule 'guidded'; " + VALID + r". Did you mean 'guided'\?"),
    ("capitalized", lambda: rules.get("Deconvnet"), r"unknown rule 'Deconvnet'; " + VALID + r". Did you mean 'deconvnet'"),
    ("paper-name", lambda: rules.get("backprop"), r"unknown rule 'backprop'; " + VALID),
    ("empty-name", lambda: rules.get(""), r"unknown rule ''; " + VALID),
    ("none", lambda: rules.get(None), r"rule must be a name, one of \['gradient', 'deconvnet', 'guided'\]; got NoneType"),
    ("number", lambda: rules.get(1), r"rule must be a name, one of \[.*\]; got int 1"),
    ("the-function-itself", lambda: rules.get(rules.guided), r"rule must be a name, one of \[.*\]; got custom_vjp"),
    ("through-model-apply", lambda: TINY.apply(TINY.init(jax.random.key(0)), np.zeros((1, 28, 28, 1), np.float32),
                                               rule="guide"), r"unknown rule 'guide'.*Did you mean 'guided'"),
]


@pytest.mark.parametrize("call, message", [case[1:] for case in BAD_INPUTS], ids=[case[0] for case in BAD_INPUTS])
def test_bad_input_is_a_value_error_saying_expected_and_given(call, message):
    with pytest.raises(ValueError, match=message):
        call()
