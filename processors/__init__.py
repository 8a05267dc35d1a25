"""Stream processors: the Faust worker and the pure math it calls."""
