"""Database helpers shared by the apps."""

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


def _array_casts(fields: Sequence[models.Field]) -> str:
    return ", ".join(f"CAST(%s AS {field.db_type(connection)}[])" for field in fields)


def bulk_insert_rows(model: type[models.Model], fields: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    """Insert rows (tuples in `fields` order; foreign keys as raw ids), skipping any that break a unique
    constraint.

    On PostgreSQL one `INSERT ... SELECT FROM unnest(arrays) ON CONFLICT DO NOTHING` sends a column per
    parameter, so neither Django nor the server parses thousands of placeholders; elsewhere bulk_create.
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
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {quote(model._meta.db_table)} ({columns}) "
            f"SELECT * FROM unnest({_array_casts(model_fields)}) ON CONFLICT DO NOTHING",
            [list(column) for column in zip(*rows, strict=True)],
        )


def bulk_update_rows(model: type[models.Model], fields: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    """Set `fields` per row, each row being (pk, *values), with one joined UPDATE per batch.

    Django's bulk_update writes one CASE branch per row for every field, which grows quadratically with the
    batch. Here the new values are a relation joined on the primary key: arrays through unnest on PostgreSQL,
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
            aliases = ", ".join(f"c{index}" for index in range(len(model_fields)))
            cursor.execute(
                f"UPDATE {table} SET {assignments} FROM unnest({_array_casts(model_fields)}) AS v({aliases}) "
                f"WHERE {table}.{quote(meta.pk.column)} = v.c0",
                [list(column) for column in zip(*rows, strict=True)],
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
