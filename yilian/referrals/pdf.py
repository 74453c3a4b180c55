"""The printable 转诊单 (PDF), drawn with reportlab and its built-in CID font STSong-Light, so no font
file is shipped or fetched. The patient's ID number is masked except its last four digits."""

from __future__ import annotations

import io
from xml.sax.saxutils import escape

from django.utils import timezone
from django.utils.translation import gettext as _
from reportlab.lib import colors
from reportlab.lib.pagesizes import A4
from reportlab.lib.styles import ParagraphStyle
from reportlab.lib.units import mm
from reportlab.pdfbase import pdfmetrics
from reportlab.pdfbase.cidfonts import UnicodeCIDFont
from reportlab.platypus import Paragraph, SimpleDocTemplate, Spacer, Table, TableStyle

from yilian.referrals.models import Referral
from yilian.web.templatetags.yilian import age

FONT = "STSong-Light"


def _font() -> str:
    if FONT not in pdfmetrics.getRegisteredFontNames():
        pdfmetrics.registerFont(UnicodeCIDFont(FONT))
    return FONT


def masked_id_number(value: str) -> str:
    """All but the last four characters hidden: 4407811962******** → **************0029."""
    if not value:
        return "—"
    return "*" * max(len(value) - 4, 0) + value[-4:]


def _local(value: object) -> str:
    if value is None:
        return "—"
    return timezone.localtime(value).strftime("%Y-%m-%d %H:%M")  # type: ignore[arg-type]


def referral_pdf(referral: Referral) -> bytes:
    """The 转诊单 of `referral` as PDF bytes (A4, one or two pages)."""
    font = _font()
    base = ParagraphStyle("base", fontName=font, fontSize=10.5, leading=15, wordWrap="CJK")
    title = ParagraphStyle("title", parent=base, fontSize=18, leading=24, alignment=1, spaceAfter=4)
    subtitle = ParagraphStyle("subtitle", parent=base, fontSize=10, alignment=1, textColor=colors.grey)
    label = ParagraphStyle("label", parent=base, textColor=colors.HexColor("#444444"))
    heading = ParagraphStyle("heading", parent=base, fontSize=12, leading=18, spaceBefore=8, spaceAfter=2)

    def para(text: object, style: ParagraphStyle = base) -> Paragraph:
        return Paragraph(escape(str(text or "—")).replace("\n", "<br/>"), style)

    patient = referral.patient
    department = referral.destination_department.name if referral.destination_department else ""
    sender_department = referral.sender_department.name if referral.sender_department else ""
    appointment = "—"
    place = ""
    if referral.booking is not None:
        schedule = referral.booking.slot.schedule
        appointment = _local(referral.booking.slot.start)
        place = f"{referral.destination_institution.name} {schedule.name} {schedule.location}".strip()
    elif referral.appointment_start is not None:
        appointment = _local(referral.appointment_start)
    if referral.bed_reservation is not None:
        place = f"{place} {referral.bed_reservation.bed}".strip()
    patient_age = age(patient.birth_date)
    facts = [
        (_("转诊单号"), referral.number, _("状态"), referral.get_status_display()),
        (_("方向"), referral.get_direction_display(), _("紧急程度"), referral.get_urgency_display()),
        (_("患者姓名"), patient.name, _("性别 / 年龄"), f"{patient.get_sex_display()} / {patient_age}".rstrip(" /")),
        (_("身份证号"), masked_id_number(patient.id_number), _("提交时间"), _local(referral.submitted_at)),
        (
            _("转出机构"),
            f"{referral.sender_institution.name} {sender_department}".strip(),
            _("接收机构"),
            f"{referral.destination_institution.name} {department}".strip(),
        ),
        (_("转诊医生"), referral.sender_name, _("联系电话"), referral.sender_phone or "—"),
        (
            _("初步诊断"),
            f"{referral.diagnosis_name} {referral.diagnosis_code}".strip(),
            _("共享范围"),
            referral.get_share_scope_display(),
        ),
        (_("就诊时间"), appointment, _("就诊地点"), place or referral.destination_institution.name),
    ]
    table = Table(
        [[para(a, label), para(b), para(c, label), para(d)] for a, b, c, d in facts],
        colWidths=[24 * mm, 61 * mm, 24 * mm, 61 * mm],
    )
    table.setStyle(
        TableStyle(
            [
                ("GRID", (0, 0), (-1, -1), 0.5, colors.HexColor("#999999")),
                ("BACKGROUND", (0, 0), (0, -1), colors.HexColor("#F1F4F8")),
                ("BACKGROUND", (2, 0), (2, -1), colors.HexColor("#F1F4F8")),
                ("VALIGN", (0, 0), (-1, -1), "MIDDLE"),
            ]
        )
    )
    story: list = [
        Paragraph(escape(referral.consortium.name), subtitle),
        Paragraph(escape(_("双向转诊单")), title),
        Spacer(1, 4 * mm),
        table,
        Paragraph(escape(_("转诊原因")), heading),
        para(referral.reason),
    ]
    if referral.criteria:
        story += [Paragraph(escape(_("符合的转诊标准")), heading)]
        story += [para(f"☑ {item.get('text', '')}") for item in referral.criteria]
    story += [Paragraph(escape(_("病情摘要")), heading), para(referral.clinical_summary)]
    instructions = referral.instructions or _("请携带身份证、医保卡、转诊单及近期检查结果。")
    story += [Paragraph(escape(_("就诊须知")), heading), para(instructions)]
    if referral.result_summary:
        story += [Paragraph(escape(_("诊疗结果/出院小结")), heading), para(referral.result_summary)]
    story += [
        Spacer(1, 14 * mm),
        Table(
            [
                [
                    para(_("转诊医生签名：________________")),
                    para(_("接收医生签名：________________")),
                ],
                [para(_("日期：______年____月____日")), para(_("日期：______年____月____日"))],
            ],
            colWidths=[85 * mm, 85 * mm],
        ),
        Spacer(1, 6 * mm),
        Paragraph(
            escape(_("本转诊单由医联体协同平台生成，打印于 %(time)s。") % {"time": _local(timezone.now())}),
            ParagraphStyle("foot", parent=base, fontSize=8.5, textColor=colors.grey),
        ),
    ]
    buffer = io.BytesIO()
    document = SimpleDocTemplate(
        buffer,
        pagesize=A4,
        leftMargin=20 * mm,
        rightMargin=20 * mm,
        topMargin=18 * mm,
        bottomMargin=18 * mm,
        title=f"{_('双向转诊单')} {referral.number}",
        author=referral.sender_institution.name,
    )
    document.build(story)
    return buffer.getvalue()
