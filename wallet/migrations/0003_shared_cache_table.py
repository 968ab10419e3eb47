"""The table of the database cache (CACHE_BACKEND=database, the default with DEBUG off), created by `migrate` so
no deploy step is forgotten: throttles count attempts there across every worker and host."""

from django.core.management.commands.createcachetable import Command as CreateCacheTable
from django.db import migrations

TABLE = "engagement_cache"


def create_cache_table(apps, schema_editor):
    command = CreateCacheTable()
    command.verbosity = 0
    command.create_table(schema_editor.connection.alias, TABLE, dry_run=False)


def drop_cache_table(apps, schema_editor):
    schema_editor.execute(f"DROP TABLE IF EXISTS {schema_editor.quote_name(TABLE)}")


class Migration(migrations.Migration):
    dependencies = [("wallet", "0002_wallet_channel")]

    operations = [migrations.RunPython(create_cache_table, drop_cache_table)]
