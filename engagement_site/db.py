"""Database helpers shared by the apps."""

import datetime as dt
import json
from collections.abc import Sequence
from typing import Any

from django.db import connection, models
from django.db.models import Q

# Rows per UPDATE statement on SQLite: well under its bound-parameter limit.
UPDATE_BATCH_ROWS = 1000


def prefix_check(field: str, prefix: str) -> Q:
    """A CHECK condition that a public-ID column carries its kind's prefix."""
    return Q(**{f"{field}__startswith": prefix})


def _columns(model: type[models.Model], names: Sequence[str]) -> list[models.Field]:
    return [model._meta.pk if name == "pk" else model._meta.get_field(name) for name in names]


def _json_default(value: object) -> str:
    if isinstance(value, dt.date | dt.time):  # datetime is a date
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def _json_relation(fields: Sequence[models.Field], rows: Sequence[Sequence[Any]]) -> tuple[str, list[str]]:
    """A relation (c0, c1, ...) of `rows` read from one JSON parameter, each column cast to its field's type.

    One JSON document is far cheaper to build and send than a bound parameter per value or per-column arrays
    (psycopg adapts array elements one by one in Python): the run writes tens of thousands of rows a second.
    """
    columns = ", ".join(
        f"CAST(e->>{index} AS {field.db_type(connection)}) AS c{index}" for index, field in enumerate(fields)
    )
    payload = json.dumps(rows, default=_json_default, separators=(",", ":"), ensure_ascii=False)
    return f"SELECT {columns} FROM json_array_elements(%s::json) AS e", [payload]


def bulk_insert_rows(model: type[models.Model], fields: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    """Insert rows (tuples in `fields` order; foreign keys as raw ids), skipping any that break a unique
    constraint.

    On PostgreSQL one `INSERT ... SELECT ... FROM json_array_elements(...) ON CONFLICT DO NOTHING` sends the
    rows as one JSON parameter, so neither Django nor the server handles thousands of placeholders; elsewhere
    bulk_create.
    """
    if not rows:
        return
    model_fields = _columns(model, fields)
    if connection.vendor != "postgresql":
        attnames = [field.attname for field in model_fields]
        model.objects.bulk_create(
            [model(**dict(zip(attnames, row, strict=True))) for row in rows], ignore_conflicts=True
        )
        return
    quote = connection.ops.quote_name
    columns = ", ".join(quote(field.column) for field in model_fields)
    relation, params = _json_relation(model_fields, rows)
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {quote(model._meta.db_table)} ({columns}) {relation} ON CONFLICT DO NOTHING", params
        )


def bulk_update_rows(model: type[models.Model], fields: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    """Set `fields` per row, each row being (pk, *values), with one joined UPDATE per batch.

    Django's bulk_update writes one CASE branch per row for every field, which grows quadratically with the
    batch. Here the new values are a relation joined on the primary key: one JSON parameter on PostgreSQL,
    a VALUES list on SQLite (3.33+), whose columns read as column1, column2, ...
    """
    if not rows:
        return
    meta = model._meta
    model_fields = _columns(model, ["pk", *fields])
    quote = connection.ops.quote_name
    table = quote(meta.db_table)
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            assignments = ", ".join(
                f"{quote(field.column)} = v.c{index}" for index, field in enumerate(model_fields) if index
            )
            relation, params = _json_relation(model_fields, rows)
            cursor.execute(
                f"UPDATE {table} SET {assignments} FROM ({relation}) AS v WHERE {table}.{quote(meta.pk.column)} = v.c0",
                params,
            )
            return
        row_sql = "(" + ", ".join(["%s"] * len(model_fields)) + ")"
        assignments = ", ".join(
            f"{quote(field.column)} = v.column{index}" for index, field in enumerate(model_fields[1:], start=2)
        )
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
