from django.db import migrations


def set_fillfactor(apps, schema_editor):
    """Leave room on each page so the run's pending -> sent update is a heap-only (HOT) update on PostgreSQL,
    writing no new index entries."""
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute("ALTER TABLE notifications_notificationlog SET (fillfactor = 75)")


def reset_fillfactor(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute("ALTER TABLE notifications_notificationlog RESET (fillfactor)")


class Migration(migrations.Migration):
    dependencies = [("notifications", "0001_initial")]

    operations = [migrations.RunPython(set_fillfactor, reset_fillfactor)]
