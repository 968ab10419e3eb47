"""Every (business, run date) that already has re-engagement log rows gets a stale results day, so the stats
count those days from the log until `refresh_engagement_results` (or the next runs) summarise them."""

from django.db import migrations

MARK_EXISTING_DAYS = """
INSERT INTO autoengagement_resultsday (business_id, run_date, stale)
SELECT DISTINCT business_id, run_date, TRUE
FROM notifications_notificationlog
WHERE type = 'auto_reengagement'
"""


class Migration(migrations.Migration):
    dependencies = [
        ("autoengagement", "0002_results_rollup"),
        ("notifications", "0002_notificationlog_fillfactor"),
    ]

    operations = [migrations.RunSQL(MARK_EXISTING_DAYS, reverse_sql=migrations.RunSQL.noop)]
