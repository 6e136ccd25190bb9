"""API tokens: roles, hashed storage, constant-time verification."""
