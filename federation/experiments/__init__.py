"""Experiments behind ``fedseg experiment NAME``; each rewrites its report."""
