"""Refused uploads keep which of the flag's variants matched, and ``found_by`` says what of
the upload was compared (whole, cut, frame) instead of a label, so every surface names the
match with ``matching.name_variant``.

Rows from before: "whole image" and "picture inside a frame" become ``whole`` and ``frame``
(which variant matched was not kept); a cut's label (the centre, the caption band) is the cut
itself, so it becomes ``cut`` with that variant. A hash list's "<type> in list <name>" stays.
"""

from django.db import migrations, models

# The labels rows were written with, and the variant numbers of the two upload cuts
# (``variants.CENTRE``, ``variants.BAND``; variant numbers are never renumbered).
OLD_WHOLE = "whole image"
OLD_FRAME = "picture inside a frame"
OLD_CUTS = {"centre (15% cut around)": 12, "caption band (top and bottom 20% cut)": 13}


def forwards(apps, schema_editor):
    RefusedUpload = apps.get_model("moderation", "RefusedUpload")
    RefusedUpload.objects.filter(found_by=OLD_WHOLE).update(found_by="whole")
    RefusedUpload.objects.filter(found_by=OLD_FRAME).update(found_by="frame")
    for label, number in OLD_CUTS.items():
        RefusedUpload.objects.filter(found_by=label).update(found_by="cut", variant=number)


def backwards(apps, schema_editor):
    RefusedUpload = apps.get_model("moderation", "RefusedUpload")
    RefusedUpload.objects.filter(found_by="whole").update(found_by=OLD_WHOLE)
    RefusedUpload.objects.filter(found_by="frame").update(found_by=OLD_FRAME)
    for label, number in OLD_CUTS.items():
        RefusedUpload.objects.filter(found_by="cut", variant=number).update(found_by=label)


class Migration(migrations.Migration):
    dependencies = [
        ("moderation", "0025_notice_restored_at"),
    ]

    operations = [
        migrations.AddField(
            model_name="refusedupload",
            name="variant",
            field=models.PositiveSmallIntegerField(
                blank=True, null=True, verbose_name="matched variant"
            ),
        ),
        migrations.RunPython(forwards, backwards),
    ]
