"""fedseg training layer."""
