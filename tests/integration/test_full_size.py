"""The long checks: full-size networks at 224x224."""

import pytest

from jaxvis import models
from test_project import assert_vjp_equals_explicit_in_every_conv_layer


@pytest.mark.parametrize("name", ["vgg16", "alexnet"])  # zfnet runs in make test
def test_vjp_deconvnet_equals_explicit_deconvnet_at_full_size(name):
    assert_vjp_equals_explicit_in_every_conv_layer(models.build(name))
