"""The schema revisions r1, r2, … (one file each, ``rN_what_it_does.py``); Alembic loads them by path."""
