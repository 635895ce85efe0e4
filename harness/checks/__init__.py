"""The checks that need no training, one module per rubric concern, and the suite that runs them.

Each check scores observations that ``harness.probes`` made inside the sandbox;
see ``harness.checks.suite.check_submission``.
"""
