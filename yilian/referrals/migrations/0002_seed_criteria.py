"""The county-wide referral criteria for hypertension and type 2 diabetes (../shared/domain/rules.md:
县域高血压分级诊疗技术方案 2022 and 国家基本公共卫生服务规范). Consortia add their own lines."""

from django.db import migrations

# (disease, direction, urgency, required capability, text)
CRITERIA = [
    ("hypertension", "up", "emergency", "", "意识丧失或模糊"),
    ("hypertension", "up", "emergency", "", "血压≥180/110 mmHg，伴剧烈头痛、呕吐、突发言语障碍或肢体瘫痪"),
    ("hypertension", "up", "emergency", "", "血压显著升高伴持续性胸背部剧烈疼痛"),
    ("hypertension", "up", "emergency", "", "血压升高伴下肢水肿、呼吸困难或不能平卧"),
    ("hypertension", "up", "emergency", "pci", "疑似急性冠脉综合征（转往具备PCI能力的医院）"),
    ("hypertension", "up", "urgent", "", "连续两次随访血压未达标（<140/90 mmHg，65岁及以上<150/90 mmHg）"),
    ("hypertension", "up", "urgent", "", "出现新的并发症或原有并发症加重"),
    ("hypertension", "up", "routine", "", "初诊不能明确诊断或需明确病因（疑似继发性高血压）"),
    ("hypertension", "down", "routine", "", "诊断明确，治疗方案已确定"),
    ("hypertension", "down", "routine", "", "治疗方案适合基层医疗机构或居家口服药物治疗"),
    ("hypertension", "down", "routine", "", "病情稳定"),
    ("hypertension", "down", "routine", "", "并发症已治疗且病情稳定"),
    ("hypertension", "down", "routine", "", "（乡镇→村）长期治疗方案近期无需调整，血压达标，需长期随访管理"),
    ("diabetes", "up", "emergency", "", "血糖≥16.7 mmol/L"),
    ("diabetes", "up", "emergency", "", "血糖≤3.9 mmol/L（低血糖）"),
    ("diabetes", "up", "emergency", "", "血压≥180/110 mmHg"),
    ("diabetes", "up", "urgent", "", "连续两次随访空腹血糖未达标（≥7.0 mmol/L）"),
    ("diabetes", "up", "urgent", "", "出现新的并发症或原有并发症加重"),
    ("diabetes", "up", "routine", "", "需调整治疗方案（如起始胰岛素治疗）而基层无条件"),
    ("diabetes", "down", "routine", "", "诊断明确，治疗方案已确定"),
    ("diabetes", "down", "routine", "", "血糖控制达标（空腹血糖<7.0 mmol/L）"),
    ("diabetes", "down", "routine", "", "病情稳定，无急性并发症"),
]


def seed(apps, schema_editor):  # type: ignore[no-untyped-def]
    ReferralCriterion = apps.get_model("referrals", "ReferralCriterion")
    if ReferralCriterion.objects.filter(consortium__isnull=True).exists():
        return
    ReferralCriterion.objects.bulk_create(
        [
            ReferralCriterion(
                disease=disease, direction=direction, urgency=urgency, required_capability=capability, text=text, position=i
            )
            for i, (disease, direction, urgency, capability, text) in enumerate(CRITERIA)
        ]
    )


def unseed(apps, schema_editor):  # type: ignore[no-untyped-def]
    apps.get_model("referrals", "ReferralCriterion").objects.filter(consortium__isnull=True).delete()


class Migration(migrations.Migration):
    dependencies = [("referrals", "0001_referrals_criteria_follow_ups")]
    operations = [migrations.RunPython(seed, unseed)]
