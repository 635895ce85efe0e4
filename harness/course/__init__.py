"""Course-level work on top of grading: batches, the Dask cluster, overrides, the grade table, export, summary."""
