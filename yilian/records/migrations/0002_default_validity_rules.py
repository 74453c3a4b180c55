"""Seed the default 结果互认 validity windows (per category); admins edit or add per-test rules."""

from django.db import migrations

DEFAULTS = {
    "laboratory": (7, "检验结果默认 7 天内互认"),
    "imaging": (30, "影像检查默认 30 天内互认"),
    "ecg": (7, "心电检查默认 7 天内互认"),
    "pathology": (30, "病理检查默认 30 天内互认"),
}


def seed(apps, schema_editor):
    Rule = apps.get_model("records", "ResultValidityRule")
    for category, (days, note) in DEFAULTS.items():
        Rule.objects.get_or_create(category=category, code="", defaults={"days": days, "note": note})


def unseed(apps, schema_editor):
    Rule = apps.get_model("records", "ResultValidityRule")
    Rule.objects.filter(code="", category__in=list(DEFAULTS)).delete()


class Migration(migrations.Migration):
    dependencies = [("records", "0001_clinical_record")]
    operations = [migrations.RunPython(seed, unseed)]
