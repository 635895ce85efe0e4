"""Running a submission's code isolated: the host side (``host``), the supervisor inside (``supervisor``), the probes
it runs (``probes``) and the typed request of a training unit (``requests``)."""
