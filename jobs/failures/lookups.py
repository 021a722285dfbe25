"""``field__like_contains``: a case-insensitive substring match the indexes can serve.

Django's ``icontains`` on PostgreSQL is ``UPPER(col) LIKE UPPER(%s)``: no
statistics on that expression (the planner guesses a handful of rows and picks
a full scan) and no use of a trigram index on the column. ``col ILIKE %s`` gets
both: the column's statistics and ``jobs_job_failed_msg_trgm`` (migration 0003).
"""

from __future__ import annotations

from typing import Any

from django.db.models import CharField, Lookup, TextField


class LikeContains(Lookup):
    lookup_name = "like_contains"

    # Django 5.2 compiles parameters as lists; the stubs already follow 6.0's tuples.
    def as_sql(self, compiler: Any, connection: Any) -> tuple[str, list[Any]]:  # type: ignore[override]
        lhs, lhs_params = self.process_lhs(compiler, connection)
        pattern = f"%{connection.ops.prep_for_like_query(self.rhs)}%"
        if connection.vendor == "postgresql":
            return f"{lhs} ILIKE %s", [*lhs_params, pattern]
        # SQLite's LIKE ignores ASCII case; the escape matches prep_for_like_query.
        return f"{lhs} LIKE %s ESCAPE '\\'", [*lhs_params, pattern]


TextField.register_lookup(LikeContains)
CharField.register_lookup(LikeContains)
