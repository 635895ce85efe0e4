"""Course-level work on top of grading: batches (batch), the Dask cluster (cluster), instructors' overrides
(overrides), each submission's documents with the overrides merged into its report (reports), the grade table
(table; no torch), export to gradebooks (export) and the course dashboard (summary)."""
