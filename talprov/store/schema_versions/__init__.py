"""Alembic's script directory for the store: ``env.py`` and the versioned scripts.

Run through :mod:`talprov.store.upgrade` (which takes the locks), or through
``talprov store upgrade``; never edit a released script, add a new one.
"""
