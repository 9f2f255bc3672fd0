"""Alembic's entry point: hands the run to :func:`talprov.store.upgrade.run_in_context`."""

from alembic import context

from talprov.store.upgrade import run_in_context

run_in_context(context.config)
