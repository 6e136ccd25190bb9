"""Subcommands that the training layer adds to ``fedseg``."""
