"""Hub storage: SQLAlchemy 2 (async) tables, the database handle, migrations."""
