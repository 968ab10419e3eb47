"""The history as CSV lines (GET /api/auto-engagement/history.csv): the history item's fields as columns, written
row by row as the database hands them over in chunks."""

import csv
import datetime as dt
import io
from collections.abc import Iterable, Iterator
from typing import Any

from autoengagement.selectors import HISTORY_FIELDS

CHUNK_ROWS = 2000
# The history item's fields in its order: the selector's, with the customer's public id second.
COLUMNS = (HISTORY_FIELDS[0], "customer_id", *HISTORY_FIELDS[1:])
# A cell a spreadsheet would read as a formula (OWASP, "CSV Injection"): prefixed with a quote, so it reads as text.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def _cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, dt.datetime):
        return value.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


def history_csv_lines(rows: Any) -> Iterator[str]:
    """The header line, then one line per history row (rows from selectors.notification_history)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)

    def line(values: Iterable[Any]) -> str:
        writer.writerow(values)
        text = buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()
        return text

    yield line(COLUMNS)
    for row in rows.iterator(chunk_size=CHUNK_ROWS):
        row["customer_id"] = row.pop("public_customer_id")
        yield line(_cell(row[column]) for column in COLUMNS)
