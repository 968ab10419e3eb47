# A delivery receipt can mark a customer's phone number as unable to receive SMS.

from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('wallet', '0005_customer_attributes_object'),
    ]

    operations = [
        migrations.AddField(
            model_name='customer',
            name='sms_undeliverable_phone',
            field=models.CharField(blank=True, db_default='', default='', max_length=20),
        ),
        migrations.AddField(
            model_name='customer',
            name='sms_undeliverable_reason',
            field=models.CharField(blank=True, db_default='', default='', max_length=200),
        ),
    ]
