"""Storage: the engine and sessions, the tables, the schema's migrations and the audit trail."""
