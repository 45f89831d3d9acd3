"""Alembic migrations of the store schema (run programmatically by :mod:`store.migrate`).

``HEAD`` names the newest revision; a test checks it against the scripts in
``versions/`` so opening an up-to-date store needs no Alembic import.
"""
HEAD = "0003"
