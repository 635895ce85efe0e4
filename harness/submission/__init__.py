"""What a student hands in, read safely: the submission's form, files, code, answers and metadata; starter folders.

- ``contents``: :class:`Submission` and :class:`CodeSource`, what a loaded submission is.
- ``detect``: what a path holds, and ``load(path, a)``, the one way every command reads a submission.
- ``folder``: a submission folder's loader (``submission.py``, ``answers.md``, ``submission.toml``).
- ``files``: which files make up a submission folder (its hash, a Dask worker's copy, the sandbox's copy).
- ``notebook``: ``read_notebook``, a handed-in .ipynb read safely, upgraded and repaired (not yet used by the commands).
- ``identity``: whose notebook a file is, from its LMS download name (Canvas's by default; not yet used).
- ``reading``: the rules for reading a student's file: size caps, no symbolic links, encodings.
- ``starter``: the starter folder ``python -m harness init`` writes.
- ``cells``: which handout a notebook's cells follow, which cell plays which role, its untouched TODO regions.
- ``notebook_answers``: a notebook's answers to the inline questions, by question id, and where each was found.
"""
