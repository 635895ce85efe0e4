"""The assignment as data: its TOML configuration loaded and validated (``assignment``), the convolution
geometry it implies (``geometry``), and the run plan every trainer follows (``plan``). Imports no torch."""
