"""Database helpers shared by the apps."""

from collections.abc import Sequence
from typing import Any

from django.db import connection, models
from django.db.models import Q

# Rows per UPDATE statement: well under SQLite's and PostgreSQL's bound-parameter limits.
UPDATE_BATCH_ROWS = 1000


def prefix_check(field: str, prefix: str) -> Q:
    """A CHECK condition that a public-ID column carries its kind's prefix."""
    return Q(**{f"{field}__startswith": prefix})


def bulk_update_rows(model: type[models.Model], fields: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    """Set `fields` per row, each row being (pk, *values), with one `UPDATE ... FROM (VALUES ...)` per batch.

    Django's bulk_update writes one CASE branch per row for every field, which grows quadratically with the
    batch; a joined VALUES list costs the database one lookup per row. PostgreSQL and SQLite (3.33+) both
    read VALUES columns as column1, column2, ...
    """
    if not rows:
        return
    meta = model._meta
    model_fields = [meta.pk, *(meta.get_field(name) for name in fields)]
    quote = connection.ops.quote_name
    if connection.vendor == "postgresql":
        placeholders = [f"CAST(%s AS {field.db_type(connection)})" for field in model_fields]
    else:
        placeholders = ["%s"] * len(model_fields)
    row_sql = "(" + ", ".join(placeholders) + ")"
    assignments = ", ".join(
        f"{quote(field.column)} = v.column{index}" for index, field in enumerate(model_fields[1:], start=2)
    )
    table = quote(meta.db_table)
    with connection.cursor() as cursor:
        for start in range(0, len(rows), UPDATE_BATCH_ROWS):
            batch = rows[start : start + UPDATE_BATCH_ROWS]
            params = [
                field.get_db_prep_save(value, connection)
                for row in batch
                for field, value in zip(model_fields, row, strict=True)
            ]
            cursor.execute(
                f"UPDATE {table} SET {assignments} FROM (VALUES {', '.join([row_sql] * len(batch))}) AS v "
                f"WHERE {table}.{quote(meta.pk.column)} = v.column1",
                params,
            )
