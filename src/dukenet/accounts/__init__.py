"""Users, roles, password hashing and JWT access tokens."""
