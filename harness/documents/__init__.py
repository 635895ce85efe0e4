"""Documents from results: figures drawn from stored arrays (figures), what the templates show of a result
(views), and the HTML and PDF rendering of reports and write-ups (render). A pure function of a result and its run
artefacts: it writes only the documents and imports no course code (the caller merges the instructor's overrides)."""
