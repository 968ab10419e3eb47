"""Database helpers shared by the apps."""

import datetime as dt
import json
from collections.abc import Mapping, Sequence
from typing import Any

from django.db import connection, models
from django.db.models import Q
from django.db.models.expressions import RawSQL
from django.db.models.functions import Cast, Substr
from django.db.models.lookups import Exact

# Rows per UPDATE statement on SQLite, and bound parameters per INSERT: well under its limit (32,766).
UPDATE_BATCH_ROWS = 1000
SQLITE_MAX_PARAMETERS = 30_000


def prefix_check(field: str, prefix: str) -> Q:
    """A CHECK condition that a public-ID column carries its kind's prefix."""
    return Q(**{f"{field}__startswith": prefix})


def json_object_check(field: str) -> Q:
    """A CHECK condition that a JSON column holds an object, written with functions every database has (no
    json_type / jsonb_typeof, whose names differ): the column's text starts with "{". PostgreSQL prints jsonb in its
    normal form (an object's text always starts with "{"); SQLite keeps the text written, which Django's own CHECK
    requires to be valid JSON, and valid JSON starting with "{" is an object."""
    return Q(Exact(Substr(Cast(field, output_field=models.TextField()), 1, 1), "{"))


def _columns(model: type[models.Model], names: Sequence[str]) -> list[models.Field]:
    return [model._meta.pk if name == "pk" else model._meta.get_field(name) for name in names]


def _json_default(value: object) -> str:
    if isinstance(value, dt.date | dt.time):  # datetime is a date
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def _json_relation(
    fields: Sequence[models.Field], rows: Sequence[Sequence[Any]], *, same: Sequence[models.Field] = ()
) -> tuple[str, list[str]]:
    """A relation (c0, c1, ...) of `rows` read from one JSON parameter, each column cast to its field's type,
    followed by one column per field of `same` read from a parameter of its own (placed before the document's).

    One JSON document is far cheaper to build and send than a bound parameter per value or per-column arrays
    (psycopg adapts array elements one by one in Python): the run writes tens of thousands of rows a second.
    It is read as jsonb, parsed once, rather than json, which each `->>` parses again (about half the INSERT's
    server time with fourteen columns).
    """
    columns = [f"CAST(e->>{index} AS {field.db_type(connection)}) AS c{index}" for index, field in enumerate(fields)]
    columns += [f"CAST(%s AS {field.db_type(connection)})" for field in same]
    payload = json.dumps(rows, default=_json_default, separators=(",", ":"), ensure_ascii=False)
    return f"SELECT {', '.join(columns)} FROM jsonb_array_elements(%s::jsonb) AS e", [payload]


def bulk_insert_rows(
    model: type[models.Model],
    fields: Sequence[str],
    rows: Sequence[Sequence[Any]],
    *,
    same: Mapping[str, Any] | None = None,
    returning: Sequence[str] = (),
) -> list[tuple[Any, ...]]:
    """Insert rows (tuples in `fields` order; foreign keys as raw ids), each also given the values of `same`
    (field name -> one value for every row), skipping any that break a unique constraint, and return the
    `returning` columns of the rows actually inserted.

    PostgreSQL gets one `INSERT ... SELECT ... FROM jsonb_array_elements(...) ON CONFLICT DO NOTHING` with the
    rows as a single JSON parameter, so neither Django nor the driver handles thousands of placeholders, and the
    `same` values as one parameter each, so the document carries (and the server unpacks) only what varies; SQLite
    gets `INSERT OR IGNORE ... VALUES` in batches under its parameter limit. Both report inserted rows through
    RETURNING (SQLite 3.35+).
    """
    if not rows:
        return []
    same = same or {}
    model_fields = _columns(model, fields)
    same_fields = _columns(model, list(same))
    same_values = [
        field.get_db_prep_save(value, connection) for field, value in zip(same_fields, same.values(), strict=True)
    ]
    quote = connection.ops.quote_name
    table = quote(model._meta.db_table)
    columns = ", ".join(quote(field.column) for field in [*model_fields, *same_fields])
    returned = _columns(model, returning)
    returning_sql = f" RETURNING {', '.join(quote(field.column) for field in returned)}" if returned else ""
    results: list[tuple[Any, ...]] = []
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            relation, params = _json_relation(model_fields, rows, same=same_fields)
            cursor.execute(
                f"INSERT INTO {table} ({columns}) {relation} ON CONFLICT DO NOTHING{returning_sql}",
                [*same_values, *params],
            )
            if returned:
                results.extend(cursor.fetchall())
            return results
        width = len(model_fields) + len(same_fields)
        row_sql = "(" + ", ".join(["%s"] * width) + ")"
        batch_rows = max(1, SQLITE_MAX_PARAMETERS // width)
        for start in range(0, len(rows), batch_rows):
            batch = rows[start : start + batch_rows]
            params = []
            for row in batch:
                params += [
                    field.get_db_prep_save(value, connection) for field, value in zip(model_fields, row, strict=True)
                ]
                params += same_values
            cursor.execute(
                f"INSERT OR IGNORE INTO {table} ({columns}) VALUES {', '.join([row_sql] * len(batch))}{returning_sql}",
                params,
            )
            if returned:
                results.extend(cursor.fetchall())
    return results


def bulk_update_rows(
    model: type[models.Model], fields: Sequence[str], rows: Sequence[Sequence[Any]], *, guard: str | None = None
) -> list[Any]:
    """Set `fields` per row, each row being (pk, *values), with one joined UPDATE per batch.

    Django's bulk_update writes one CASE branch per row for every field, which grows quadratically with the
    batch. Here the new values are a relation joined on the primary key: one JSON parameter on PostgreSQL,
    a VALUES list on SQLite (3.33+), whose columns read as column1, column2, ...

    With `guard` (a field name), each row is (pk, expected, *values): a row whose `guard` column no longer holds
    `expected` is left alone (None expects nothing), and the primary keys of the rows updated are returned, so a
    caller can take rows over only if no one else did in the meantime.
    """
    if not rows:
        return []
    meta = model._meta
    names = ["pk", *([guard] if guard else []), *fields]
    model_fields = _columns(model, names)
    first_value = 2 if guard else 1
    quote = connection.ops.quote_name
    table = quote(meta.db_table)
    pk_column = quote(meta.pk.column)
    updated: list[Any] = []
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            assignments = ", ".join(
                f"{quote(field.column)} = v.c{index}"
                for index, field in enumerate(model_fields)
                if index >= first_value
            )
            condition = f" AND (v.c1 IS NULL OR {table}.{quote(model_fields[1].column)} = v.c1)" if guard else ""
            returning = f" RETURNING {table}.{pk_column}" if guard else ""
            relation, params = _json_relation(model_fields, rows)
            cursor.execute(
                f"UPDATE {table} SET {assignments} FROM ({relation}) AS v WHERE {table}.{pk_column} = v.c0"
                f"{condition}{returning}",
                params,
            )
            return [row[0] for row in cursor.fetchall()] if guard else []
        row_sql = "(" + ", ".join(["%s"] * len(model_fields)) + ")"
        assignments = ", ".join(
            f"{quote(field.column)} = v.column{index + 1}"
            for index, field in enumerate(model_fields)
            if index >= first_value
        )
        condition = f" AND (v.column2 IS NULL OR {table}.{quote(model_fields[1].column)} = v.column2)" if guard else ""
        returning = f" RETURNING {pk_column}" if guard else ""
        for start in range(0, len(rows), UPDATE_BATCH_ROWS):
            batch = rows[start : start + UPDATE_BATCH_ROWS]
            params = [
                field.get_db_prep_save(value, connection)
                for row in batch
                for field, value in zip(model_fields, row, strict=True)
            ]
            cursor.execute(
                f"UPDATE {table} SET {assignments} FROM (VALUES {', '.join([row_sql] * len(batch))}) AS v "
                f"WHERE {table}.{pk_column} = v.column1{condition}{returning}",
                params,
            )
            if guard:
                updated.extend(row[0] for row in cursor.fetchall())
    return updated


def in_values(model: type[models.Model], field: str, values: Sequence[Any]) -> RawSQL:
    """A filter condition: `field` is one of `values`, sent as one JSON parameter (`queryset.filter(in_values(...))`).

    An IN list of thousands of values is thousands of placeholders, which Django and psycopg handle one by one in
    Python (a third of a second for 10,000) and SQLite limits; a JSON array is one parameter read on the server.
    On PostgreSQL it becomes an array computed once (`= ANY(ARRAY(...))`), so the condition stays an index condition
    whatever the table's statistics say (a join with the JSON's rows could be planned as a scan per value), and
    still proves a partial index's `IS NOT NULL`; SQLite reads it with json_each."""
    column = _columns(model, [field])[0]
    quote = connection.ops.quote_name
    name = f"{quote(model._meta.db_table)}.{quote(column.column)}"
    payload = json.dumps(list(values), separators=(",", ":"), ensure_ascii=False)
    if connection.vendor == "postgresql":
        db_type = column.db_type(connection)
        sql = f"{name} = ANY(ARRAY(SELECT CAST(e AS {db_type}) FROM jsonb_array_elements_text(%s::jsonb) AS e))"
    else:
        sql = f"{name} IN (SELECT value FROM json_each(%s))"
    return RawSQL(sql, [payload], output_field=models.BooleanField())


def rows_by_key(
    model: type[models.Model], where: Mapping[str, Any], field: str, values: Sequence[Any], columns: Sequence[str]
) -> list[tuple[Any, ...]]:
    """The `columns` (as the database gives them: meant for keys and ids) of the rows of `model` whose `where`
    fields equal the values given and whose `field` is one of `values`, where (`where` fields, `field`) is unique (a
    tenant's key, such as a business's external_id).

    On PostgreSQL each value is one probe of that unique index (a LATERAL subquery with LIMIT 1, which the planner
    cannot turn into a join): a plain `field = ANY(...) AND business_id = ...` may be planned, when the statistics
    do not know the tenant yet (a business importing its first customers), as a scan of the whole tenant with the
    values as a filter, reading all of it for every request. SQLite plans it well as is."""
    quote = connection.ops.quote_name
    table = quote(model._meta.db_table)
    where_fields = _columns(model, list(where))
    where_sql = " AND ".join(
        f"{quote(column.column)} = (SELECT CAST(%s AS {column.db_type(connection)}))"
        if connection.vendor == "postgresql"
        else f"{quote(column.column)} = %s"
        for column in where_fields
    )
    where_params = [
        column.get_db_prep_value(value, connection) for column, value in zip(where_fields, where.values(), strict=True)
    ]
    key = _columns(model, [field])[0]
    selected = ", ".join(quote(column.column) for column in _columns(model, columns))
    payload = json.dumps(list(values), separators=(",", ":"), ensure_ascii=False)
    if connection.vendor == "postgresql":
        sql = (
            f"SELECT found.* FROM jsonb_array_elements_text(%s::jsonb) AS wanted(value) CROSS JOIN LATERAL ("
            f"SELECT {selected} FROM {table} WHERE {where_sql} "
            f"AND {quote(key.column)} = CAST(wanted.value AS {key.db_type(connection)}) LIMIT 1) AS found"
        )
        params = [payload, *where_params]
    else:
        in_json = f"{quote(key.column)} IN (SELECT value FROM json_each(%s))"
        sql = f"SELECT {selected} FROM {table} WHERE {where_sql} AND {in_json}"
        params = [*where_params, payload]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall()
