"""The machine learning: MNIST data, the reference models, the training loop and the metrics."""
