from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("moderation", "0027_auditevent_actions"),
    ]

    operations = [
        migrations.AddField(
            model_name="refusedupload",
            name="thumbnail",
            field=models.BinaryField(
                blank=True,
                editable=False,
                null=True,
                verbose_name="thumbnail of the refused picture (private)",
            ),
        ),
    ]
