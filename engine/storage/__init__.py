"""Storage: the SQLModel tables and the database helpers."""
