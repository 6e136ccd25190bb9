"""Reproducible experiments reported under docs/experiments/."""
