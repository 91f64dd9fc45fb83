"""nacvae: encoder pretraining for VAEs with Neural Activation Coding."""

__version__ = "0.1.0"
