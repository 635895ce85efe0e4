"""The harness's own reference runs (AE, VAEs, beta search, the beta band), built once and cached.

- ``build``: the reference a profile trains (``build_reference``), the reference VAE at a
  student's beta (``reference_at_beta``), the search alone (``train_search``); reading them back.
- ``trainer``: ``Trainer``, which trains and measures one run of the run plan, and the tuned-beta criterion.
- ``measure``: ``RunMeasure``, the one measurement type of a student's and a reference run;
  ``RunRecord``, a reference run as ``reference.json`` stores it; ``ReferenceResult``, a profile's whole
  reference as grading reads it.
- ``classifier``: the metrics classifier and the ``Calibration`` every run is measured with.
- ``beta_band``: the full-protocol search and the band of good betas it defines.
- ``cache``: cache folders, keys, one builder per entry.
"""
