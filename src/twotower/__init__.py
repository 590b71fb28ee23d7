"""twotower: Two-Tower recommendations served from PostgreSQL + pgvector."""
__version__ = "0.1.0"
