"""Alembic's script folder for mailgate's schema: env.py, the revision template and versions/ (rN_*.py)."""
