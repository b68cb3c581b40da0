"""Alembic environment of the store (``env.py``) and its revisions (``versions/``)."""
