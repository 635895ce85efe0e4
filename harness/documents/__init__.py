"""Documents from results: figures from stored arrays, HTML and PDF rendering of reports and write-ups."""
