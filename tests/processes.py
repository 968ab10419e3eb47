"""For tests that start the project's own commands in processes of their own: where the project is, and the URL of
the test database those processes must use (the same one the test writes to)."""

from pathlib import Path

from django.db import connection

PROJECT = Path(__file__).resolve().parents[1]


def database_url() -> str:
    db = connection.settings_dict
    auth = db["USER"] + (f":{db['PASSWORD']}" if db["PASSWORD"] else "")
    return f"postgres://{auth}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"
