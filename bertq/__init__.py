"""bertq: a batch system for BERT-family encoders."""

__version__ = "0.1.0"
