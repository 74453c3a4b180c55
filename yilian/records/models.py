"""The shared health record (共享健康档案), FHIR-aligned.

Every clinical row comes from one member institution's system: it belongs to the SourceIdentity it
came with (`identity`), carries the sending `institution` and the sender's own id for the row
(`source_id`), and (institution, source_id) is unique, so sending a row again updates it in place
(ADR 0003). A golden patient's record is read through `identity__patient`: merging or unmerging
patients moves the identities and every record follows without being rewritten.

ServiceRequest (an order placed in Yilian) and ResultRecognition (结果互认) are Yilian's own rows and
hang off the golden patient directly.
"""

from __future__ import annotations

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import F, Q
from django.utils.translation import gettext_lazy as _

from yilian.core.models import PublicModel
from yilian.organizations.models import Institution
from yilian.patients.models import Patient, SourceIdentity

MAX_MONEY = 99_999_999
NOT_NEGATIVE = MinValueValidator(0, _("金额不能为负数。"))
MONEY_CAP = MaxValueValidator(MAX_MONEY, _("金额过大。"))
MAX_QUANTITY = 9_999_999_999


class EncounterClass(models.TextChoices):
    """Kinds of encounter (FHIR Encounter.class, with the Chinese service types)."""

    OUTPATIENT = "outpatient", _("门诊")
    EMERGENCY = "emergency", _("急诊")
    INPATIENT = "inpatient", _("住院")
    HEALTH_CHECK = "health_check", _("体检")
    FOLLOW_UP = "follow_up", _("随访")


class PayerType(models.TextChoices):
    """Who pays (医疗付费方式, simplified from WS 364 CV07.10.003)."""

    EMPLOYEE_INSURANCE = "employee", _("职工基本医疗保险")
    RESIDENT_INSURANCE = "resident", _("城乡居民基本医疗保险")
    MEDICAL_ASSISTANCE = "assistance", _("医疗救助")
    COMMERCIAL = "commercial", _("商业医疗保险")
    PUBLIC = "public", _("公费医疗")
    SELF_PAY = "self_pay", _("全自费")
    OTHER = "other", _("其他")


class ObservationCategory(models.TextChoices):
    VITAL_SIGNS = "vital_signs", _("生命体征")
    LABORATORY = "laboratory", _("检验")


class Interpretation(models.TextChoices):
    """Abnormal flag (FHIR Observation.interpretation)."""

    NORMAL = "N", _("正常")
    HIGH = "H", _("偏高")
    LOW = "L", _("偏低")
    CRITICAL_HIGH = "HH", _("危急偏高")
    CRITICAL_LOW = "LL", _("危急偏低")
    ABNORMAL = "A", _("异常")


class ReportCategory(models.TextChoices):
    """Kinds of diagnostic report; also the categories of tests for 结果互认."""

    LABORATORY = "laboratory", _("检验")
    IMAGING = "imaging", _("影像")
    ECG = "ecg", _("心电")
    PATHOLOGY = "pathology", _("病理")


class DocumentKind(models.TextChoices):
    DISCHARGE_SUMMARY = "discharge_summary", _("出院小结")
    REFERRAL_LETTER = "referral_letter", _("转诊单")
    PROGRESS_NOTE = "progress_note", _("病程记录")
    ATTACHMENT = "attachment", _("附件")
    OTHER = "other", _("其他文书")


class ClinicalRecord(PublicModel):
    """What every row a member sends shares: whose it is, who sent it, and the sender's id for it."""

    identity = models.ForeignKey(SourceIdentity, on_delete=models.PROTECT, related_name="+", verbose_name="源身份")
    institution = models.ForeignKey(Institution, on_delete=models.PROTECT, related_name="+", verbose_name="来源机构")
    source_id = models.CharField("来源系统记录号", max_length=64)

    class Meta:
        abstract = True


class Encounter(ClinicalRecord):
    """One visit, stay, health check or follow-up (就诊). For inpatients `started_at` is the
    admission and `ended_at` the discharge."""

    encounter_class = models.CharField("就诊类型", max_length=16, choices=EncounterClass.choices)
    department_name = models.CharField("科室", max_length=50, blank=True)
    practitioner_name = models.CharField("接诊医生", max_length=50, blank=True)
    reason = models.CharField("主诉/就诊原因", max_length=200, blank=True)
    started_at = models.DateTimeField("开始/入院时间")
    ended_at = models.DateTimeField("结束/出院时间", null=True, blank=True)
    payer_type = models.CharField("付费方式", max_length=16, choices=PayerType.choices, default=PayerType.SELF_PAY)
    total_cost = models.DecimalField(
        "总费用（元）", max_digits=12, decimal_places=2, default=0, validators=[NOT_NEGATIVE, MONEY_CAP]
    )
    insurance_paid = models.DecimalField(
        "医保支付（元）", max_digits=12, decimal_places=2, default=0, validators=[NOT_NEGATIVE, MONEY_CAP]
    )

    class Meta:
        verbose_name = "就诊记录"
        verbose_name_plural = "就诊记录"
        ordering = ["-started_at"]
        constraints = [
            models.UniqueConstraint(fields=["institution", "source_id"], name="records_encounter_unique_source"),
            models.CheckConstraint(
                condition=Q(ended_at__isnull=True) | Q(ended_at__gte=F("started_at")), name="encounter_ends_after_start"
            ),
            models.CheckConstraint(
                condition=Q(total_cost__gte=0) & Q(insurance_paid__gte=0), name="encounter_amounts_not_negative"
            ),
            models.CheckConstraint(condition=Q(insurance_paid__lte=F("total_cost")), name="encounter_insurance_within_total"),
        ]
        indexes = [models.Index(fields=["identity", "-started_at"]), models.Index(fields=["institution", "started_at"])]

    def __str__(self) -> str:
        return f"{self.get_encounter_class_display()} {self.started_at:%Y-%m-%d}"


class Condition(ClinicalRecord):
    """A diagnosis (诊断) coded in ICD-10 (WHO, or 国家临床版 extending a WHO code)."""

    encounter = models.ForeignKey(
        Encounter, on_delete=models.PROTECT, null=True, blank=True, related_name="conditions", verbose_name="就诊"
    )
    icd10_code = models.CharField("ICD-10 编码", max_length=16)
    display = models.CharField("诊断名称", max_length=100)
    is_primary = models.BooleanField("主要诊断", default=False)
    recorded_at = models.DateTimeField("诊断时间")

    class Meta:
        verbose_name = "诊断"
        verbose_name_plural = "诊断"
        ordering = ["-recorded_at"]
        constraints = [models.UniqueConstraint(fields=["institution", "source_id"], name="records_condition_unique_source")]
        indexes = [models.Index(fields=["identity", "-recorded_at"]), models.Index(fields=["icd10_code"])]

    def __str__(self) -> str:
        return f"{self.icd10_code} {self.display}"


class Observation(ClinicalRecord):
    """A vital sign or a lab result (观察/检验结果) with its unit, reference range and abnormal flag."""

    encounter = models.ForeignKey(
        Encounter, on_delete=models.PROTECT, null=True, blank=True, related_name="observations", verbose_name="就诊"
    )
    category = models.CharField("类别", max_length=16, choices=ObservationCategory.choices)
    code = models.CharField("项目编码", max_length=32)
    display = models.CharField("项目名称", max_length=100)
    value_quantity = models.DecimalField(
        "数值结果",
        max_digits=14,
        decimal_places=4,
        null=True,
        blank=True,
        validators=[MinValueValidator(-MAX_QUANTITY), MaxValueValidator(MAX_QUANTITY)],
    )
    value_text = models.CharField("文字结果", max_length=200, blank=True)
    unit = models.CharField("单位", max_length=32, blank=True)
    reference_low = models.DecimalField("参考下限", max_digits=14, decimal_places=4, null=True, blank=True)
    reference_high = models.DecimalField("参考上限", max_digits=14, decimal_places=4, null=True, blank=True)
    reference_text = models.CharField("参考范围", max_length=100, blank=True)
    interpretation = models.CharField("异常标识", max_length=2, choices=Interpretation.choices, blank=True)
    effective_at = models.DateTimeField("采样/测量时间")

    class Meta:
        verbose_name = "观察/检验结果"
        verbose_name_plural = "观察/检验结果"
        ordering = ["-effective_at"]
        constraints = [
            models.UniqueConstraint(fields=["institution", "source_id"], name="records_observation_unique_source"),
            models.CheckConstraint(
                condition=Q(reference_low__isnull=True)
                | Q(reference_high__isnull=True)
                | Q(reference_low__lte=F("reference_high")),
                name="observation_reference_range_ordered",
            ),
        ]
        indexes = [models.Index(fields=["identity", "-effective_at"]), models.Index(fields=["code", "effective_at"])]

    def __str__(self) -> str:
        return f"{self.display} {self.value_display}"

    @property
    def value_display(self) -> str:
        if self.value_quantity is not None:
            return f"{self.value_quantity.normalize():f} {self.unit}".strip()
        return self.value_text

    @property
    def reference_display(self) -> str:
        if self.reference_text:
            return self.reference_text
        low = "" if self.reference_low is None else f"{self.reference_low.normalize():f}"
        high = "" if self.reference_high is None else f"{self.reference_high.normalize():f}"
        return f"{low}–{high}" if low or high else ""


class DiagnosticReport(ClinicalRecord):
    """An imaging, ECG, lab or pathology report (检查/检验报告): findings, conclusion, who signed it."""

    encounter = models.ForeignKey(
        Encounter, on_delete=models.PROTECT, null=True, blank=True, related_name="reports", verbose_name="就诊"
    )
    category = models.CharField("类别", max_length=16, choices=ReportCategory.choices)
    code = models.CharField("项目编码", max_length=32)
    display = models.CharField("项目名称", max_length=100)
    text = models.TextField("检查所见", max_length=4000, blank=True)
    conclusion = models.TextField("结论/诊断意见", max_length=2000, blank=True)
    performer_name = models.CharField("报告医生", max_length=50, blank=True)
    effective_at = models.DateTimeField("检查时间")
    issued_at = models.DateTimeField("报告时间", null=True, blank=True)

    class Meta:
        verbose_name = "检查/检验报告"
        verbose_name_plural = "检查/检验报告"
        ordering = ["-effective_at"]
        constraints = [
            models.UniqueConstraint(fields=["institution", "source_id"], name="records_report_unique_source"),
            models.CheckConstraint(
                condition=Q(issued_at__isnull=True) | Q(issued_at__gte=F("effective_at")), name="report_issued_after_exam"
            ),
        ]
        indexes = [models.Index(fields=["identity", "-effective_at"]), models.Index(fields=["code", "effective_at"])]

    def __str__(self) -> str:
        return self.display


class MedicationRequest(ClinicalRecord):
    """A prescription line (处方/医嘱)."""

    encounter = models.ForeignKey(
        Encounter, on_delete=models.PROTECT, null=True, blank=True, related_name="medication_requests", verbose_name="就诊"
    )
    medication_code = models.CharField("药品编码", max_length=32, blank=True)
    medication_name = models.CharField("药品名称", max_length=100)
    dosage_text = models.CharField("用法用量", max_length=200, blank=True)
    quantity = models.DecimalField(
        "数量",
        max_digits=14,
        decimal_places=4,
        null=True,
        blank=True,
        validators=[MinValueValidator(0, _("数量不能为负数。")), MaxValueValidator(MAX_QUANTITY)],
    )
    quantity_unit = models.CharField("数量单位", max_length=16, blank=True)
    days_supply = models.PositiveSmallIntegerField("用药天数", null=True, blank=True, validators=[MaxValueValidator(365)])
    prescriber_name = models.CharField("开方医生", max_length=50, blank=True)
    authored_at = models.DateTimeField("开方时间")

    class Meta:
        verbose_name = "处方"
        verbose_name_plural = "处方"
        ordering = ["-authored_at"]
        constraints = [models.UniqueConstraint(fields=["institution", "source_id"], name="records_medication_unique_source")]
        indexes = [models.Index(fields=["identity", "-authored_at"])]

    def __str__(self) -> str:
        return self.medication_name


class Procedure(ClinicalRecord):
    """An operation or procedure (手术/操作), with its grade under 手术分级管理 (1–4)."""

    encounter = models.ForeignKey(
        Encounter, on_delete=models.PROTECT, null=True, blank=True, related_name="procedures", verbose_name="就诊"
    )
    code = models.CharField("手术/操作编码", max_length=32)
    display = models.CharField("手术/操作名称", max_length=100)
    grade = models.PositiveSmallIntegerField(
        "手术分级",
        null=True,
        blank=True,
        validators=[MinValueValidator(1, _("手术分级为 1–4 级。")), MaxValueValidator(4, _("手术分级为 1–4 级。"))],
    )
    performer_name = models.CharField("术者", max_length=50, blank=True)
    performed_at = models.DateTimeField("手术/操作时间")

    class Meta:
        verbose_name = "手术/操作"
        verbose_name_plural = "手术/操作"
        ordering = ["-performed_at"]
        constraints = [
            models.UniqueConstraint(fields=["institution", "source_id"], name="records_procedure_unique_source"),
            models.CheckConstraint(
                condition=Q(grade__isnull=True) | Q(grade__gte=1, grade__lte=4), name="procedure_grade_1_to_4"
            ),
        ]
        indexes = [models.Index(fields=["identity", "-performed_at"])]

    def __str__(self) -> str:
        return self.display


class DocumentReference(ClinicalRecord):
    """A clinical document (文书): discharge summary, referral letter, or an attachment by address."""

    encounter = models.ForeignKey(
        Encounter, on_delete=models.PROTECT, null=True, blank=True, related_name="documents", verbose_name="就诊"
    )
    kind = models.CharField("文书类型", max_length=24, choices=DocumentKind.choices)
    title = models.CharField("标题", max_length=100)
    text = models.TextField("内容", max_length=20000, blank=True)
    attachment_url = models.URLField("附件地址", max_length=500, blank=True)
    content_type = models.CharField("附件类型", max_length=100, blank=True)
    author_name = models.CharField("书写人", max_length=50, blank=True)
    dated_at = models.DateTimeField("文书时间")

    class Meta:
        verbose_name = "医疗文书"
        verbose_name_plural = "医疗文书"
        ordering = ["-dated_at"]
        constraints = [models.UniqueConstraint(fields=["institution", "source_id"], name="records_document_unique_source")]
        indexes = [models.Index(fields=["identity", "-dated_at"])]

    def __str__(self) -> str:
        return self.title


class InsuranceSettlement(ClinicalRecord):
    """One medical-insurance settlement (医保结算) of an insured resident. The provider may be a
    member (`provider_institution`) or any hospital outside the consortium or the county, named by
    its insurance code, name and GB/T 2260 region: that is how visits outside the county become
    known (县域内就诊率). `within_county` is decided when the row is written."""

    encounter = models.ForeignKey(
        Encounter, on_delete=models.PROTECT, null=True, blank=True, related_name="settlements", verbose_name="就诊"
    )
    encounter_class = models.CharField("就诊类型", max_length=16, choices=EncounterClass.choices)
    payer_type = models.CharField("险种", max_length=16, choices=PayerType.choices)
    provider_institution = models.ForeignKey(
        Institution, on_delete=models.PROTECT, null=True, blank=True, related_name="+", verbose_name="就诊机构（成员单位）"
    )
    provider_name = models.CharField("就诊机构名称", max_length=100)
    provider_code = models.CharField("医保定点机构编码", max_length=32, blank=True)
    provider_region = models.CharField("就诊机构所在地区划代码", max_length=6, blank=True)
    within_county = models.BooleanField("县域内", default=True)
    settled_at = models.DateTimeField("结算时间")
    total_cost = models.DecimalField("医疗总费用（元）", max_digits=12, decimal_places=2, validators=[NOT_NEGATIVE, MONEY_CAP])
    fund_paid = models.DecimalField(
        "统筹基金支付（元）", max_digits=12, decimal_places=2, default=0, validators=[NOT_NEGATIVE, MONEY_CAP]
    )
    personal_paid = models.DecimalField(
        "个人支付（元）", max_digits=12, decimal_places=2, default=0, validators=[NOT_NEGATIVE, MONEY_CAP]
    )

    class Meta:
        verbose_name = "医保结算"
        verbose_name_plural = "医保结算"
        ordering = ["-settled_at"]
        constraints = [
            models.UniqueConstraint(fields=["institution", "source_id"], name="records_settlement_unique_source"),
            models.CheckConstraint(
                condition=Q(total_cost__gte=0) & Q(fund_paid__gte=0) & Q(personal_paid__gte=0),
                name="settlement_amounts_not_negative",
            ),
            models.CheckConstraint(condition=Q(fund_paid__lte=F("total_cost")), name="settlement_fund_within_total"),
        ]
        indexes = [models.Index(fields=["identity", "-settled_at"]), models.Index(fields=["settled_at", "within_county"])]

    def __str__(self) -> str:
        return f"{self.provider_name} {self.settled_at:%Y-%m-%d}"


# --- 结果互认 ----------------------------------------------------------------------------------


class ResultValidityRule(models.Model):
    """How long another member's result of a test may be recognised instead of repeating it
    (互认有效期). A rule with a `code` is for that test; one without is the category default.
    Edited by system admins (Django admin); seeded with lab 7, imaging 30, ECG 7, pathology 30 days."""

    category = models.CharField("类别", max_length=16, choices=ReportCategory.choices)
    code = models.CharField("项目编码", max_length=32, blank=True, help_text="留空表示该类别的默认有效期")
    days = models.PositiveSmallIntegerField(
        "有效期（天）",
        validators=[MinValueValidator(1, _("有效期至少 1 天。")), MaxValueValidator(365, _("有效期最长 365 天。"))],
    )
    note = models.CharField("说明", max_length=200, blank=True)

    class Meta:
        verbose_name = "结果互认有效期"
        verbose_name_plural = "结果互认有效期"
        ordering = ["category", "code"]
        constraints = [
            models.UniqueConstraint(fields=["category", "code"], name="records_validity_unique_rule"),
            models.CheckConstraint(condition=Q(days__gte=1, days__lte=365), name="validity_days_in_range"),
        ]

    def __str__(self) -> str:
        return f"{self.get_category_display()} {self.code or '（默认）'}：{self.days} 天"


class ServiceRequestStatus(models.TextChoices):
    ACTIVE = "active", _("已开单")
    REVOKED = "revoked", _("已撤销")


class ServiceRequest(PublicModel):
    """A test ordered in Yilian (开检查/检验, FHIR ServiceRequest) for a golden patient."""

    patient = models.ForeignKey(Patient, on_delete=models.PROTECT, related_name="service_requests", verbose_name="患者")
    institution = models.ForeignKey(Institution, on_delete=models.PROTECT, related_name="+", verbose_name="开单机构")
    requester = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+", verbose_name="开单医生")
    category = models.CharField("类别", max_length=16, choices=ReportCategory.choices)
    code = models.CharField("项目编码", max_length=32)
    display = models.CharField("项目名称", max_length=100)
    reason = models.CharField("开单理由", max_length=200, blank=True)
    status = models.CharField("状态", max_length=16, choices=ServiceRequestStatus.choices, default=ServiceRequestStatus.ACTIVE)
    authored_at = models.DateTimeField("开单时间")

    class Meta:
        verbose_name = "检查/检验申请"
        verbose_name_plural = "检查/检验申请"
        ordering = ["-authored_at"]
        indexes = [models.Index(fields=["patient", "-authored_at"])]

    def __str__(self) -> str:
        return self.display


class ResultRecognition(PublicModel):
    """One act of 结果互认: a clinician accepted another member's result instead of repeating the
    test. Who, acting for which institution, which result (and whose), for which test, when. It is
    the row the indicator B4 (检查检验结果互认次数) counts."""

    patient = models.ForeignKey(Patient, on_delete=models.PROTECT, related_name="result_recognitions", verbose_name="患者")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+", verbose_name="互认医生")
    institution = models.ForeignKey(Institution, on_delete=models.PROTECT, related_name="+", verbose_name="互认机构")
    result_institution = models.ForeignKey(Institution, on_delete=models.PROTECT, related_name="+", verbose_name="结果来源机构")
    observation = models.ForeignKey(
        Observation, on_delete=models.PROTECT, null=True, blank=True, related_name="+", verbose_name="检验结果"
    )
    diagnostic_report = models.ForeignKey(
        DiagnosticReport, on_delete=models.PROTECT, null=True, blank=True, related_name="+", verbose_name="检查报告"
    )
    service_request = models.ForeignKey(
        ServiceRequest, on_delete=models.PROTECT, null=True, blank=True, related_name="recognitions", verbose_name="对应申请"
    )
    category = models.CharField("类别", max_length=16, choices=ReportCategory.choices)
    code = models.CharField("项目编码", max_length=32)
    display = models.CharField("项目名称", max_length=100)
    recognised_at = models.DateTimeField("互认时间")

    class Meta:
        verbose_name = "结果互认记录"
        verbose_name_plural = "结果互认记录"
        ordering = ["-recognised_at"]
        constraints = [
            models.CheckConstraint(
                condition=(Q(observation__isnull=False) & Q(diagnostic_report__isnull=True))
                | (Q(observation__isnull=True) & Q(diagnostic_report__isnull=False)),
                name="recognition_names_one_result",
            ),
        ]
        indexes = [models.Index(fields=["institution", "recognised_at"]), models.Index(fields=["patient", "-recognised_at"])]

    def __str__(self) -> str:
        return f"{self.display} {self.recognised_at:%Y-%m-%d}"
