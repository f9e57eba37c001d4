"""A refused upload records what of it was near the banned fingerprint: the whole image, one of
its cuts (centre, caption band) or the picture inside its frame (``matching.Match.found_by``).
Rows from before say nothing (empty)."""

from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ("moderation", "0010_caption_band"),
    ]

    operations = [
        migrations.AddField(
            model_name="refusedupload",
            name="found_by",
            field=models.CharField(
                blank=True, default="", max_length=60, verbose_name="found by"
            ),
        ),
    ]
