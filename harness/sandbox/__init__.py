"""Running student code isolated: the host side, the supervisor inside, and the probes it runs."""
