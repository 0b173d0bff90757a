"""jaxvis: seeing inside convolutional networks with JAX."""
