"""kitlib: reproducibility kit for class-imbalanced medical image classification."""
__version__ = "0.1.0"
