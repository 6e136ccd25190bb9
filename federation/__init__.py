"""fedseg federation layer."""
