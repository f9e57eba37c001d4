import moderation.models.background
from django.db import migrations, models


def give_each_delivery_its_message_id(apps, schema_editor):
    """Rows written before the field each get their own (a column default would give every
    existing row the same one)."""
    EmailDelivery = apps.get_model("moderation", "EmailDelivery")
    for delivery in EmailDelivery.objects.filter(message_id__isnull=True).only("pk"):
        delivery.message_id = moderation.models.background.new_message_id()
        delivery.save(update_fields=["message_id"])


class Migration(migrations.Migration):
    dependencies = [
        ("moderation", "0015_work_ranges"),
    ]

    operations = [
        migrations.AddField(
            model_name="emaildelivery",
            name="message_id",
            field=models.CharField(
                editable=False, max_length=255, null=True, verbose_name="Message-ID"
            ),
        ),
        migrations.RunPython(give_each_delivery_its_message_id, migrations.RunPython.noop),
        migrations.AlterField(
            model_name="emaildelivery",
            name="message_id",
            field=models.CharField(
                default=moderation.models.background.new_message_id,
                editable=False,
                max_length=255,
                unique=True,
                verbose_name="Message-ID",
            ),
        ),
    ]
