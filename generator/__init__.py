"""schemagen: declarative YAML schema changes rendered into Alembic migrations and checks."""
