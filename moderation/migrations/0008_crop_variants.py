"""A flag's fingerprints are its *variants*: the 8 orientations and now a few crops.

The field that numbered orientations (0-7) numbers variants (``moderation/variants.py``) and is
called ``variant``; the column keeps its name and every row its number, so nothing is written
here. Crop variants of existing flags are added by ``manage.py reindex`` (pipeline version 4),
from each flag's kept original.
"""

from django.db import migrations, models

# moderation.variants.CHOICES as of this migration.
VARIANT_CHOICES = [
    (0, 'upright'),
    (1, 'mirrored'),
    (2, 'turned 90° anticlockwise'),
    (3, 'turned 180°'),
    (4, 'turned 90° clockwise'),
    (5, 'flipped upside down'),
    (6, 'transposed'),
    (7, 'transversed'),
    (8, '8% cut off the left'),
    (9, '8% cut off the right'),
    (10, '8% cut off the top'),
    (11, '8% cut off the bottom'),
    (12, 'centre (15% cut around)'),
]


class Migration(migrations.Migration):

    dependencies = [
        ("moderation", "0007_shadow_hits"),
    ]

    operations = [
        migrations.RemoveConstraint(
            model_name="fingerprintvariant",
            name="one_variant_per_orientation",
        ),
        migrations.AlterField(
            model_name="fingerprintvariant",
            name="orientation",
            field=models.PositiveSmallIntegerField(
                choices=VARIANT_CHOICES, db_column="orientation", verbose_name="variant"
            ),
        ),
        migrations.RenameField(
            model_name="fingerprintvariant",
            old_name="orientation",
            new_name="variant",
        ),
        migrations.AlterField(
            model_name="bannedsetchange",
            name="orientation",
            field=models.PositiveSmallIntegerField(db_column="orientation", default=0),
        ),
        migrations.RenameField(
            model_name="bannedsetchange",
            old_name="orientation",
            new_name="variant",
        ),
        migrations.AlterModelOptions(
            name="fingerprintvariant",
            options={"ordering": ["flagged", "variant"], "verbose_name": "fingerprint variant"},
        ),
        migrations.AddConstraint(
            model_name="fingerprintvariant",
            constraint=models.UniqueConstraint(
                fields=("flagged", "variant"), name="one_row_per_variant"
            ),
        ),
    ]
