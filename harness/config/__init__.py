"""The assignment: its TOML configuration, loaded and validated, and the convolution geometry it implies."""
