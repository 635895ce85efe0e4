"""Grading one submission. The three commands are siblings; none imports another:

- ``check``: the fast checks (``python -m harness check``); ``grade``: every rubric item against the
  reference (``grade``); ``write_up``: the student's own runs for the write-up (``report``).
- ``session``: what they share: ``RunOptions``, each unit's limits, the sandbox, the training unit's
  runner, the result with its provenance.
- ``code``: the code items every command starts with; ``runs``: the training runs ``grade`` and
  ``report`` both train (inputs, ``TrainRequest``, records); ``grader``: what a course is graded with.
- ``items``: scoring, one module per rubric concern; ``rubric``, ``result``, ``artifacts``: item
  scores, the result file and the arrays the documents show.
"""
