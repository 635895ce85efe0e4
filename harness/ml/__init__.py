"""The machine learning: MNIST data (``data``), the assignment's models (``models``, on the convolutions of
``gemm_conv``), the reference training loop (``training``) and the metrics (``metrics``)."""
