"""Flags store one more variant: the caption band (``variants.BAND``, number 13).

Only the field's choices change; nothing is written here. The band of existing flags is added by
``manage.py reindex`` (pipeline version 5), from each flag's kept original.
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
    (13, 'caption band (top and bottom 20% cut)'),
]


class Migration(migrations.Migration):

    dependencies = [
        ("moderation", "0009_desk_trials_revocation_throttle"),
    ]

    operations = [
        migrations.AlterField(
            model_name="fingerprintvariant",
            name="variant",
            field=models.PositiveSmallIntegerField(
                choices=VARIANT_CHOICES, db_column="orientation", verbose_name="variant"
            ),
        ),
    ]
