"""The history as CSV lines (GET /api/auto-engagement/history.csv): the history item's fields as columns, written
row by row as the database hands them over in chunks."""

import csv
import datetime as dt
import io
from collections.abc import Iterable, Iterator
from typing import Any

CHUNK_ROWS = 2000
COLUMNS = (
    "notification_id",
    "customer_id",
    "channel",
    "status",
    "header",
    "body",
    "error",
    "created_at",
    "sent_at",
    "delivered_at",
    "delivery_error",
    "step",
    "variant",
)
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
