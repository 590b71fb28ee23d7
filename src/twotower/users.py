"""Forgetting a user (account deletion): everything twotower holds about them goes in one
transaction: every table of twotower's own schema with a `user_id` column (user vectors of every
version, the recommendation log, and whatever later tables key on users). The app's tables (its
profiles and decisions) are the app's to delete; on Supabase, deleting the `auth.users` row
cascades there as the app's schema says."""

from __future__ import annotations

import psycopg
from psycopg import sql

from twotower.source import SCHEMA

TABLES = """SELECT c.table_name FROM information_schema.columns c
JOIN information_schema.tables t ON t.table_schema = c.table_schema AND t.table_name = c.table_name
WHERE c.table_schema = %s AND c.column_name = 'user_id' AND t.table_type = 'BASE TABLE'
ORDER BY c.table_name"""


def forget(conn: psycopg.Connection, user_id: str) -> dict[str, int]:
    """Delete the user's rows from every twotower table; {table: rows deleted}."""
    out: dict[str, int] = {}
    with conn.transaction():
        for (table,) in conn.execute(TABLES, (SCHEMA,)).fetchall():
            cur = conn.execute(sql.SQL("DELETE FROM {}.{} WHERE user_id = %s").format(
                sql.Identifier(SCHEMA), sql.Identifier(table)), (user_id,))
            out[table] = cur.rowcount
    return out


async def forget_async(conn: psycopg.AsyncConnection, user_id: str) -> dict[str, int]:
    out: dict[str, int] = {}
    async with conn.transaction():
        tables = await (await conn.execute(TABLES, (SCHEMA,))).fetchall()
        for (table,) in tables:
            cur = await conn.execute(sql.SQL("DELETE FROM {}.{} WHERE user_id = %s").format(
                sql.Identifier(SCHEMA), sql.Identifier(table)), (user_id,))
            out[table] = cur.rowcount
    return out
