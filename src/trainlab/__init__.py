"""trainlab: train image classifiers and manage the experiments around them."""

__version__ = "0.1.0"

__all__ = ["__version__"]
