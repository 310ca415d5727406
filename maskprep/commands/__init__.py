"""One module per sub-command; each defines ``command`` (a click command)."""
