# Delivery receipts (Twilio StatusCallback, email tracking through anymail): why a message did not arrive, and
# the index receipts find their row by.

from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('notifications', '0008_log_step_variant_html'),
    ]

    operations = [
        migrations.AddField(
            model_name='notificationlog',
            name='delivery_error',
            field=models.TextField(blank=True, db_default='', default=''),
        ),
        migrations.AlterField(
            model_name='notificationlog',
            name='delivered_at',
            field=models.DateTimeField(blank=True, help_text='A receipt says the message arrived (wallet: the device fetched the pass).', null=True),
        ),
        migrations.AddIndex(
            model_name='notificationlog',
            index=models.Index(condition=models.Q(('provider_message_id', ''), _negated=True), fields=['provider_message_id'], name='notification_provider_id_idx'),
        ),
    ]
