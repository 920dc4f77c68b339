"""mammojax: breast-imaging methods as pure-functional JAX, Flax and Jraph code."""

__version__ = "0.1.0"
