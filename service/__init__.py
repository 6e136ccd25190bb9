"""fedseg service layer."""
