"""The experiment layer: sweeps (and, later, comparisons, reports, reproduction), built on the record."""
