"""Alembic migrations of the Ticket-Rush database; run them with `app.core.migrate`."""
