"""ReLU backward rules: what a rectifier does to the signal coming down.

With ``f_{l+1} = max(f_l, 0)`` and ``R_{l+1}`` the signal arriving from above
(Simonyan et al. Sec. 4; Springenberg et al. 2015):

- ``gradient``:  ``R_l = [f_l > 0] * R_{l+1}``            (backpropagation)
- ``deconvnet``: ``R_l = max(R_{l+1}, 0)``                (Zeiler & Fergus Sec. 2.1)
- ``guided``:    ``R_l = [f_l > 0] * max(R_{l+1}, 0)``     (guided backpropagation)

Each rule is a ReLU whose forward pass is the ordinary one and whose VJP is the rule;
``Model.apply(..., rule=name)`` uses it in place of every ReLU. Convolution and
max-pooling keep their true VJPs, so ``jax.vjp`` through the network with the
``deconvnet`` rule *is* the deconvnet: transposed filters and unpooling by switches.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

from jaxvis import _checks


def _relu_with_backward(backward: Callable) -> Callable:
    @jax.custom_vjp
    def relu(x):
        return jnp.maximum(x, 0)

    def fwd(x):
        return jnp.maximum(x, 0), x

    def bwd(x, g):
        return (backward(x, g),)

    relu.defvjp(fwd, bwd)
    return relu


def _zero_like(g):
    return jnp.zeros((), g.dtype)


gradient = _relu_with_backward(lambda x, g: jnp.where(x > 0, g, _zero_like(g)))
deconvnet = _relu_with_backward(lambda x, g: jnp.maximum(g, 0))
guided = _relu_with_backward(lambda x, g: jnp.where(x > 0, jnp.maximum(g, 0), _zero_like(g)))

RULES: dict[str, Callable] = {"gradient": gradient, "deconvnet": deconvnet, "guided": guided}


def get(rule: str) -> Callable:
    """The ReLU for a rule name; a ``ValueError`` names the valid ones."""
    if not isinstance(rule, str):
        raise ValueError(f"rule must be a name, one of {list(RULES)}; got {type(rule).__name__} {rule!r}")
    _checks.choice("rule", rule, RULES)
    return RULES[rule]
