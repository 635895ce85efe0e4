"""harness: grading and reports for the auto-encoder / beta-VAE homework on MNIST."""

__version__ = "0.1.0"
