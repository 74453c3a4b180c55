"""Demo referrals (双向转诊) for the demo county: recent referrals in every state, made through
`yilian.referrals.services` so grants, events, notifications and bookings are what the pages would
make, and an older, closed history inserted in bulk for scale (also used by bench/referrals.py).

Recent referrals (the last three weeks) are built around the personas, so each sees work at once:
黄晓敏 (township_doctor, 水步镇卫生院) sends up to 台山市人民医院 and acknowledges down referrals,
陈国栋 (village_doctor, 石龙村) refers up to 水步 and holds follow-up tasks, 伍志强 (lead_doctor)
sends down and receives in cardiology, 梅丽华 (coordinator) accepts, books the townships' reserved
units (号源下沉) and sees the board with overdue referrals, 余德明 (tcm_doctor) has an inbox in the
other consortium. Every step is taken now by the service and then moved back to its place on a
plausible timeline (`_retime`), including the referral number's date and the grant's window; the
escalation and expiry of old ones are the services' own (`referrals_escalate`, `referrals_expire`).
One overdue referral is left unescalated on purpose: the demo's timer escalates it within a minute.

The bulk history (`referral_history_insert`) holds only closed referrals (completed, rejected,
cancelled, expired) older than 31 days, with the same invariants as the services': an event per
step, the receiver's grant (revoked at the end, or ending 7 days after completion), follow-up tasks
for every completed down referral, no booking (the slots of last year are not in the demo).
Deterministic for a seed, apart from the times, which follow the day the demo is built.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import io
import random
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from yilian.access.models import AccessGrant, GrantScope, GrantSource
from yilian.accounts.actors import Actor
from yilian.accounts.models import Membership, User
from yilian.accounts.roles import Role
from yilian.demo import taishan
from yilian.notifications.models import Notification
from yilian.organizations.models import Consortium, ConsortiumMembership, Department, Institution, InstitutionKind
from yilian.patients.models import Patient
from yilian.referrals import services
from yilian.referrals.models import (
    Direction,
    FollowUpStatus,
    FollowUpTask,
    Referral,
    ReferralCriterion,
    ReferralEvent,
    ReferralStatus,
    Urgency,
)
from yilian.referrals.services import FollowUpSpec, deadlines_for
from yilian.scheduling.models import Bed, BedStatus, Booking, Schedule, ScheduleKind, Slot

S = ReferralStatus
K = ReferralEvent.Kind
DEFAULT_HISTORY = 1200
HISTORY_MIN_AGE_DAYS = 31
HISTORY_DAYS = 365

INSTRUCTIONS = "请携带身份证、医保卡、转诊单及近期检查结果，提前30分钟到门诊楼一楼转诊服务中心登记。"


@dataclass(frozen=True)
class Case:
    """A clinical reason to refer: what the sending doctor writes and what comes back."""

    diagnosis: str
    code: str
    urgency: str
    department: str  # at the receiving hospital ("" at a township: 全科医学科)
    reason: str
    summary: str
    result: str
    criteria: tuple[str, ...] = ()  # beginnings of catalogue lines (ReferralCriterion.text)
    capability: str = ""
    follow_ups: tuple[tuple[int, str], ...] = ()  # down: (days after acknowledgment, what to check)


UP_CASES = (
    Case(
        "急性冠脉综合征？",
        "I20.0",
        Urgency.EMERGENCY,
        "心血管内科",
        "突发胸骨后压榨样疼痛40分钟，伴大汗、恶心，含服硝酸甘油不缓解。",
        "高血压病史10年。血压 168/96 mmHg，心率 102 次/分。心电图示 V1–V4 导联 ST 段抬高 0.2–0.4 mV。已嚼服阿司匹林 300 mg。",
        "急诊冠脉造影示前降支近段闭塞，行 PCI 植入支架 1 枚。术后阿司匹林+替格瑞洛双抗 12 个月，阿托伐他汀 20 mg。"
        "病情稳定出院，转回基层随访。",
        ("疑似急性冠脉综合征", "血压显著升高伴持续性胸背部剧烈疼痛"),
        "pci",
    ),
    Case(
        "原发性高血压",
        "I10",
        Urgency.URGENT,
        "心血管内科",
        "规律服用氨氯地平、缬沙坦，连续两次随访血压 168/102、172/98 mmHg，未达标。",
        "67岁，高血压病史8年，服药依从性好，低盐饮食。无胸痛、头痛。肌酐 88 μmol/L，血钾 3.9 mmol/L。",
        "调整为氨氯地平 5 mg+缬沙坦 160 mg+氢氯噻嗪 12.5 mg，动态血压平均 134/82 mmHg；排除继发性高血压。建议基层每2周随访血压。",
        ("连续两次随访血压未达标",),
    ),
    Case(
        "高血压（疑似继发性）",
        "I10",
        Urgency.ROUTINE,
        "心血管内科",
        "38岁，初诊血压 176/108 mmHg，伴低血钾，疑原发性醛固酮增多症，需明确病因。",
        "血钾 3.1 mmol/L，无利尿剂服用史。肾上腺 B 超未见明显异常。",
        "醛固酮/肾素比值升高，肾上腺 CT 示左侧肾上腺腺瘤，已转泌尿外科择期手术；术前螺内酯控制血压。",
        ("初诊不能明确诊断或需明确病因",),
    ),
    Case(
        "2型糖尿病",
        "E11.9",
        Urgency.URGENT,
        "内分泌科",
        "二甲双胍+格列美脲治疗，连续两次随访空腹血糖 10.8、11.6 mmol/L，糖化血红蛋白 9.4%。",
        "59岁，糖尿病病史6年，体重指数 27.1。无酮症，尿常规示尿糖 3+。",
        "起始甘精胰岛素 12 U 睡前注射，停格列美脲；糖尿病教育，出院时空腹血糖 6.8 mmol/L。建议基层每周监测血糖、调整胰岛素剂量。",
        ("连续两次随访空腹血糖未达标",),
    ),
    Case(
        "2型糖尿病伴有肾的并发症",
        "E11.2",
        Urgency.ROUTINE,
        "内分泌科",
        "尿微量白蛋白/肌酐比 86 mg/g，估算肾小球滤过率 52 mL/min，需评估糖尿病肾病并调整降糖方案，基层无条件。",
        "糖尿病病史12年，合并高血压。现用二甲双胍 0.5 g tid。",
        "诊断糖尿病肾病 G3aA2。二甲双胍减量，加用达格列净 10 mg qd，缬沙坦 80 mg qd。3个月后复查尿白蛋白/肌酐比。",
        ("需调整治疗方案（如起始胰岛素治疗）而基层无条件", "出现新的并发症或原有并发症加重"),
    ),
    Case(
        "2型糖尿病 低血糖症",
        "E11.9",
        Urgency.EMERGENCY,
        "内分泌科",
        "晨起意识模糊，指尖血糖 2.6 mmol/L，静推50%葡萄糖后好转，近一周反复发作。",
        "78岁，独居，使用预混胰岛素 30R 早晚各 16 U，近期进食减少。",
        "停用预混胰岛素，改为德谷胰岛素 8 U qd，未再发生低血糖；家属已接受低血糖识别和处理培训。",
        ("血糖≤3.9 mmol/L",),
    ),
    Case(
        "脑梗死",
        "I63.9",
        Urgency.EMERGENCY,
        "神经内科",
        "突发右侧肢体无力伴言语不清2小时，血压 186/112 mmHg，美国国立卫生研究院卒中量表 6 分。",
        "高血压、房颤病史，未规律服用抗凝药。发病时间明确（今晨 07:40）。",
        "头颅 CT 排除出血，静脉溶栓后右侧肌力由 3 级恢复至 4+ 级；启动抗凝（利伐沙班）及他汀治疗，康复科介入。"
        "出院转回基层康复随访。",
        ("血压≥180/110 mmHg，伴剧烈头痛",),
        "stroke_centre",
    ),
    Case(
        "慢性阻塞性肺病伴有急性加重",
        "J44.1",
        Urgency.URGENT,
        "呼吸内科",
        "咳嗽、咳脓痰加重5天，活动后气促明显，未吸氧时血氧饱和度 88%，乡镇卫生院抗感染治疗3天无好转。",
        "吸烟40年，慢阻肺病史6年，去年住院2次。双肺可闻及干湿啰音。",
        "抗感染、雾化、无创通气治疗10天好转出院；出院带药噻托溴铵吸入 18 μg qd，建议基层指导呼吸康复并接种流感、肺炎疫苗。",
    ),
    Case(
        "肺炎",
        "J18.9",
        Urgency.URGENT,
        "呼吸内科",
        "发热、咳嗽4天，体温 39.2 ℃，胸片示右下肺斑片影，口服抗生素无效。",
        "81岁，合并糖尿病。呼吸 24 次/分，血氧饱和度 92%。",
        "头孢曲松+阿奇霉素治疗7天，体温正常、复查胸片病灶吸收，出院。",
    ),
    Case(
        "股骨颈骨折",
        "S72.0",
        Urgency.URGENT,
        "骨科",
        "82岁，跌倒后左髋疼痛、不能站立，左下肢外旋短缩畸形，DR 示左股骨颈骨折。",
        "骨质疏松病史，既往高血压。已予制动、镇痛。",
        "行左侧人工股骨头置换术，术后第3天扶助行器下地；出院转回基层康复及抗骨质疏松治疗（阿仑膦酸钠、钙剂、维生素D）。",
    ),
    Case(
        "桡骨下端骨折",
        "S52.5",
        Urgency.ROUTINE,
        "骨科",
        "跌倒时手撑地，右腕肿痛畸形，DR 示桡骨远端骨折，移位明显，需手法复位或手术。",
        "65岁女性，已予夹板临时固定。",
        "行切开复位钢板内固定术，术后2周拆线，6周后复查 DR 示骨折线模糊，开始腕关节功能锻炼。",
    ),
    Case(
        "心力衰竭",
        "I50.9",
        Urgency.EMERGENCY,
        "心血管内科",
        "高血压心脏病，近3天双下肢水肿、夜间不能平卧，血压 182/104 mmHg。",
        "心率 112 次/分，双肺底湿啰音，颈静脉怒张。",
        "利尿、扩血管治疗后症状缓解，心脏彩超射血分数 38%，加用沙库巴曲缬沙坦、美托洛尔缓释片、螺内酯。",
        ("血压升高伴下肢水肿、呼吸困难或不能平卧",),
    ),
    Case(
        "消化道出血",
        "K92.2",
        Urgency.URGENT,
        "消化内科",
        "黑便3天，乏力、头晕，血红蛋白 78 g/L，需胃镜检查明确出血原因。",
        "长期服用阿司匹林。血压 104/62 mmHg，心率 98 次/分。",
        "胃镜示十二指肠球部溃疡（A2 期），予质子泵抑制剂治疗，输红细胞 2 U；阿司匹林暂停，2 个月后复查胃镜。",
        (),
        "endoscopy",
    ),
    Case(
        "心房颤动",
        "I48",
        Urgency.ROUTINE,
        "心血管内科",
        "心悸反复发作半年，心电图示心房颤动，需评估抗凝及节律控制方案。",
        "CHA2DS2-VASc 评分 3 分，HAS-BLED 评分 1 分。",
        "动态心电图示持续性房颤，予利伐沙班 15 mg qd 抗凝、美托洛尔控制心室率，择期评估射频消融。",
    ),
)

DOWN_CASES = (
    Case(
        "原发性高血压",
        "I10",
        Urgency.ROUTINE,
        "",
        "住院调整降压方案后血压稳定于 130–138/80–86 mmHg，转回基层长期随访管理。",
        "出院带药：氨氯地平 5 mg qd、缬沙坦 80 mg qd。心、肾功能正常。",
        "已按方案完成基层随访，血压达标，纳入家庭医生签约管理。",
        ("诊断明确，治疗方案已确定", "病情稳定"),
        follow_ups=((7, "测量血压、心率，核对服药（氨氯地平、缬沙坦）"), (30, "复查血钾、肌酐，评估降压效果")),
    ),
    Case(
        "急性心肌梗死（PCI术后）",
        "I21.9",
        Urgency.ROUTINE,
        "",
        "前降支 PCI 术后第7天，无胸痛发作，心功能良好，转回基层二级预防与随访。",
        "阿司匹林 100 mg+替格瑞洛 90 mg bid（至术后12个月）、阿托伐他汀 20 mg、美托洛尔缓释片 47.5 mg。",
        "随访期间无胸痛，双抗依从性好，1个月复查血脂达标。",
        ("并发症已治疗且病情稳定",),
        follow_ups=((7, "询问胸痛症状，核对双抗服药依从性，测血压心率"), (30, "复查血脂、肝功能，评估他汀疗效")),
    ),
    Case(
        "脑梗死恢复期",
        "I63.9",
        Urgency.ROUTINE,
        "",
        "脑梗死溶栓后第12天，病情稳定，右侧肢体肌力 4+ 级，转回基层康复训练与二级预防。",
        "利伐沙班 20 mg qd、阿托伐他汀 40 mg qn、氨氯地平 5 mg qd。",
        "基层康复3个月，改良 Rankin 量表 1 分，可独立行走。",
        ("诊断明确，治疗方案已确定",),
        follow_ups=((3, "肢体功能康复训练指导，测量血压"), (90, "评估改良 Rankin 量表，复查血脂")),
    ),
    Case(
        "2型糖尿病",
        "E11.9",
        Urgency.ROUTINE,
        "",
        "起始基础胰岛素后血糖控制达标，转回基层继续管理。",
        "甘精胰岛素 12 U 睡前、二甲双胍 0.5 g tid。空腹血糖 6.5 mmol/L。",
        "随访期间空腹血糖 6–7 mmol/L，无低血糖，3个月糖化血红蛋白 7.1%。",
        ("血糖控制达标", "诊断明确，治疗方案已确定"),
        follow_ups=((7, "查空腹及餐后2小时血糖，检查胰岛素注射部位与技术"), (90, "复查糖化血红蛋白")),
    ),
    Case(
        "股骨颈骨折（人工股骨头置换术后）",
        "S72.0",
        Urgency.ROUTINE,
        "",
        "左侧人工股骨头置换术后第9天，切口愈合良好，转回基层康复。",
        "利伐沙班 10 mg qd 至术后35天，阿仑膦酸钠 70 mg 每周一次。",
        "术后6周扶拐行走，切口愈合，无深静脉血栓。",
        follow_ups=(
            (5, "检查切口愈合及下肢肿胀、疼痛（深静脉血栓征象），指导助行器行走"),
            (42, "评估行走能力，核对抗骨质疏松用药"),
        ),
    ),
    Case(
        "慢性阻塞性肺病",
        "J44.1",
        Urgency.ROUTINE,
        "",
        "慢阻肺急性加重已控制，转回基层稳定期管理。",
        "噻托溴铵吸入 18 μg qd，必要时沙丁胺醇气雾剂。",
        "随访期间未再加重，已接种流感疫苗。",
        follow_ups=((7, "检查吸入装置使用方法，测血氧饱和度"), (30, "呼吸康复训练指导，评估 mMRC 呼吸困难分级")),
    ),
)

LATERAL_CASE = Case(
    "慢性肾脏病5期",
    "N18.5",
    Urgency.ROUTINE,
    "肾内科",
    "规律血液透析，本院透析中心机位已满，平转至具备血液透析能力的同级医院继续透析。",
    "每周3次血液透析，干体重 56 kg，血红蛋白 102 g/L。",
    "已在接收医院透析中心安排每周一、三、五透析，透析充分性达标。",
    capability="dialysis",
)

REJECT_REASONS = (
    "病情符合基层处理标准，建议在乡镇卫生院调整用药后2周复诊随访。",
    "缺少近期心电图及血常规结果，请补充后重新提交。",
    "本科室床位已满，建议转台山市第二人民医院或3日后再转。",
    "该病种非本科室收治范围，建议改转内分泌科。",
)
DOWN_REJECT_REASON = "患者已迁居冲蒌镇，请转至冲蒌镇卫生院随访。"
CANCEL_REASONS = (
    "患者家属要求转往广州就诊。",
    "患者症状缓解，暂不转诊，继续基层随访。",
    "患者本人拒绝转诊。",
)
ACCEPT_NOTES = ("同意接收，请按预约时间就诊。", "已通知病区准备床位。", "同意接收。", "")
ACK_NOTE = "已接收，已安排家庭医生随访。"


# --- time ----------------------------------------------------------------------------------------


@dataclass
class _Plan:
    """Where one referral's steps belong in time (the services took them all just now)."""

    referral_id: int
    submitted: dt.datetime
    accepted: dt.datetime | None = None
    arrived: dt.datetime | None = None
    completed: dt.datetime | None = None
    ended: dt.datetime | None = None  # rejected or cancelled; expired ones end at expires_at
    follow_ups_done: dt.datetime | None = None
    follow_up_days: dict[int, int] = field(default_factory=dict)  # task id → days after acceptance


def _retime(plan: _Plan) -> None:
    """Move a referral made just now to its timeline: fields, events, grant, number, follow-ups.

    Derived exactly as the services derive them, so the result is what taking each step at its
    time would have left (accept_by and expires_at from the consortium's deadlines, the grant's
    window from REFERRAL_GRANT_DAYS, the arrival grace from the appointment or the acceptance)."""
    referral = Referral.objects.select_related("consortium", "grant", "booking__slot").get(pk=plan.referral_id)
    accept_minutes, expire_minutes = deadlines_for(referral.consortium, referral.urgency)
    submitted = plan.submitted
    referral.submitted_at = submitted
    referral.accept_by = submitted + dt.timedelta(minutes=accept_minutes)
    grace = dt.timedelta(days=settings.REFERRAL_ARRIVAL_GRACE_DAYS)
    accepted = plan.accepted if referral.accepted_at is not None else None
    if accepted is None:
        referral.expires_at = submitted + dt.timedelta(minutes=expire_minutes)
    elif referral.appointment_start is not None and referral.booking_id is not None:
        referral.expires_at = max(referral.appointment_start, accepted) + grace
    else:
        referral.expires_at = accepted + grace
    if referral.bed_reservation_id is not None and accepted is not None:
        referral.appointment_start = accepted
    referral.accepted_at = accepted
    referral.scheduled_at = accepted if referral.scheduled_at is not None else None
    referral.arrived_at = plan.arrived if referral.arrived_at is not None else None
    referral.completed_at = plan.completed if referral.completed_at is not None else None
    if referral.escalated_at is not None:
        referral.escalated_at = referral.accept_by + dt.timedelta(minutes=1)
    if referral.status == S.EXPIRED:
        referral.ended_at = referral.expires_at
    elif referral.status == S.COMPLETED:
        referral.ended_at = referral.completed_at
    elif referral.ended_at is not None:
        referral.ended_at = plan.ended or submitted
    old_number = referral.number
    referral.number = f"ZZ{timezone.localtime(submitted):%Y%m%d}{referral.pk:06d}"
    Referral.objects.filter(pk=referral.pk).update(
        number=referral.number,
        submitted_at=referral.submitted_at,
        accept_by=referral.accept_by,
        expires_at=referral.expires_at,
        escalated_at=referral.escalated_at,
        accepted_at=referral.accepted_at,
        scheduled_at=referral.scheduled_at,
        appointment_start=referral.appointment_start,
        arrived_at=referral.arrived_at,
        completed_at=referral.completed_at,
        ended_at=referral.ended_at,
    )
    at = {
        K.SUBMITTED: submitted,
        K.ACCEPTED: accepted,
        K.FOLLOW_UP: accepted,
        K.SCHEDULED: accepted,
        K.ARRIVED: referral.arrived_at,
        K.COMPLETED: referral.completed_at,
        K.REJECTED: referral.ended_at,
        K.CANCELLED: referral.ended_at,
        K.EXPIRED: referral.ended_at,
        K.ESCALATED: referral.escalated_at,
    }
    for event in ReferralEvent.objects.filter(referral=referral):
        when = at.get(event.kind)  # type: ignore[call-overload]
        if when is not None and event.at != when:
            ReferralEvent.objects.filter(pk=event.pk).update(at=when)
    grant = referral.grant
    if grant is not None:
        grant.starts_at = submitted
        grant.expires_at = submitted + dt.timedelta(days=settings.REFERRAL_GRANT_DAYS)
        if referral.status == S.COMPLETED and referral.completed_at is not None:
            after = referral.completed_at + dt.timedelta(days=settings.REFERRAL_GRANT_AFTER_COMPLETION_DAYS)
            grant.expires_at = max(grant.starts_at + dt.timedelta(seconds=1), min(grant.expires_at, after))
        if grant.revoked_at is not None:
            grant.revoked_at = referral.ended_at
        AccessGrant.objects.filter(pk=grant.pk).update(
            starts_at=grant.starts_at,
            expires_at=grant.expires_at,
            revoked_at=grant.revoked_at,
            source_reference=referral.number,
        )
    if plan.follow_ups_done is not None:
        FollowUpTask.objects.filter(referral=referral, status=FollowUpStatus.DONE).update(done_at=plan.follow_ups_done)
    if accepted is not None:
        _retime_follow_ups(referral, plan, timezone.localtime(accepted).date())
    if old_number != referral.number:
        for notification in Notification.objects.filter(Q(title__contains=old_number) | Q(body__contains=old_number)):
            notification.title = notification.title.replace(old_number, referral.number)
            notification.body = notification.body.replace(old_number, referral.number)
            notification.save(update_fields=["title", "body"])
        if referral.booking_id is not None:
            booking = Booking.objects.get(pk=referral.booking_id)
            Booking.objects.filter(pk=booking.pk).update(note=booking.note.replace(old_number, referral.number))


def _retime_follow_ups(referral: Referral, plan: _Plan, accepted_on: dt.date) -> None:
    """Due dates count from the acknowledgment; the event and the doctor's notification say so."""
    for task in FollowUpTask.objects.filter(referral=referral, pk__in=plan.follow_up_days):
        due = accepted_on + dt.timedelta(days=plan.follow_up_days[task.pk])
        if due == task.due_date:
            continue
        old, new = f"{task.due_date:%Y-%m-%d}", f"{due:%Y-%m-%d}"
        FollowUpTask.objects.filter(pk=task.pk).update(due_date=due)
        ReferralEvent.objects.filter(referral=referral, kind=K.FOLLOW_UP, note=f"{old} {task.what_to_check}").update(
            note=f"{new} {task.what_to_check}"
        )
        for notification in Notification.objects.filter(recipient_id=task.responsible_id, title__contains=old):
            if task.what_to_check[:60] in notification.title:
                notification.title = notification.title.replace(old, new)
                notification.save(update_fields=["title"])


# --- recent referrals through the services ---------------------------------------------------------


@dataclass
class _Context:
    rng: random.Random
    now: dt.datetime
    criteria: dict[tuple[str, str], list[ReferralCriterion]]
    used_patients: set[int] = field(default_factory=set)
    plans: list[_Plan] = field(default_factory=list)
    late_plans: list[_Plan] = field(default_factory=list)  # overdue, retimed after the escalation
    counts: dict[str, int] = field(default_factory=dict)


def _actor(username: str, institution: Institution | None = None) -> Actor | None:
    memberships = Membership.objects.filter(user__username=username, ended_on__isnull=True).select_related("user", "institution")
    if institution is not None:
        memberships = memberships.filter(institution=institution)
    membership = memberships.order_by("pk").first()
    return Actor(user=membership.user, membership=membership) if membership else None


def _staff_actor(institution: Institution, *, department: str = "", roles: tuple[str, ...] = (Role.CLINICIAN,)) -> Actor | None:
    memberships = Membership.objects.filter(institution=institution, role__in=roles, ended_on__isnull=True)
    if department:
        memberships = memberships.filter(department__name=department)
    membership = memberships.exclude(user__username__in=[p.username for p in taishan.PERSONAS]).order_by("pk").first()
    if membership is None:
        membership = memberships.order_by("pk").first()
    if membership is None:
        return None
    membership = Membership.objects.select_related("user", "institution").get(pk=membership.pk)
    return Actor(user=membership.user, membership=membership)


def _criteria_ids(context: _Context, case: Case, direction: str) -> list[int]:
    ids = []
    for line in context.criteria.get(("", direction), []):
        if any(line.text.startswith(prefix) for prefix in case.criteria):
            ids.append(line.pk)
    return ids


def _patient(context: _Context, sender: Actor, held: list[Institution], *, at: Institution | None = None) -> Patient | None:
    """An unused resident of `held` the sender may see (and, with `at`, known at that institution)."""
    queryset = Patient.objects.filter(home_institution__in=held, merged_into__isnull=True).exclude(pk__in=context.used_patients)
    if at is not None:
        queryset = queryset.filter(identities__institution=at)
    for patient in queryset.distinct().order_by("pk")[:40]:
        if Patient.objects.visible_to(sender).filter(pk=patient.pk).exists():
            context.used_patients.add(patient.pk)
            return patient
    return None


def _department(institution: Institution, name: str) -> Department | None:
    if not name:
        return None
    return Department.objects.filter(institution=institution, name=name, is_active=True).first()


def _free_slot(institution: Institution, department: Department | None, context: _Context) -> Slot | None:
    schedules = Schedule.objects.filter(institution=institution, kind=ScheduleKind.DEPARTMENT, is_active=True)
    if department is not None:
        schedules = schedules.filter(department=department)
    starts = context.now + dt.timedelta(days=1)
    slots = list(
        Slot.objects.filter(schedule__in=schedules, start__gt=starts, is_closed=False)
        .order_by("start")
        .select_related("schedule")[:60]
    )
    context.rng.shuffle(slots)
    return slots[0] if slots else None


def _free_bed(institution: Institution, department: Department | None) -> Bed | None:
    beds = Bed.objects.filter(ward__institution=institution, ward__is_active=True, status=BedStatus.FREE)
    if department is not None and beds.filter(ward__department=department).exists():
        beds = beds.filter(ward__department=department)
    return beds.select_related("ward").order_by("ward__code", "code").first()


@dataclass(frozen=True)
class _Story:
    """One recent referral: who sends what where, how far it got and when it was sent."""

    state: str  # submitted, escalated, overdue, accepted, scheduled, bed, arrived, completed, rejected, cancelled, expired
    hours_ago: float
    case: Case


def _tell(
    context: _Context,
    story: _Story,
    *,
    sender: Actor,
    receiver: Actor,
    patient: Patient,
    direction: str,
    destination: Institution,
    follow_up_doctor: User | None = None,
) -> Referral | None:
    """Take a referral through the services to the story's state and plan its timeline."""
    case = story.case
    department = _department(destination, case.department)
    submitted = context.now - dt.timedelta(hours=story.hours_ago)
    doctor = follow_up_doctor or receiver.user
    if doctor is None:
        return None
    try:
        referral = services.referral_submit(
            actor=sender,
            patient=patient,
            direction=direction,
            urgency=case.urgency,
            destination_institution=destination,
            destination_department=department,
            reason=case.reason,
            diagnosis_name=case.diagnosis,
            diagnosis_code=case.code,
            clinical_summary=case.summary,
            criteria_ids=_criteria_ids(context, case, direction),
            required_capability=case.capability,
        )
    except ValidationError:
        return None
    plan = _Plan(referral.pk, submitted)
    accept_minutes, _expire = deadlines_for(referral.consortium, referral.urgency)
    # Every step lands between the submission and now: the answer within the acceptance window (and
    # within the first third of the referral's age), the later steps in the time left.
    age = context.now - submitted
    accepted = submitted + min(dt.timedelta(minutes=accept_minutes * context.rng.uniform(0.1, 0.6)), age * 0.3)
    specs: list[FollowUpSpec] = []
    if direction == Direction.DOWN:
        today = timezone.localdate()
        specs = [FollowUpSpec(doctor, today + dt.timedelta(days=days), what) for days, what in case.follow_ups]
    state = story.state
    if state in ("submitted", "escalated", "expired"):
        context.plans.append(plan)
    elif state == "overdue":
        context.late_plans.append(plan)
    elif state == "rejected":
        reason = DOWN_REJECT_REASON if direction == Direction.DOWN else context.rng.choice(REJECT_REASONS)
        services.referral_reject(actor=receiver, referral=referral, reason=reason)
        plan.ended = accepted
        context.plans.append(plan)
    elif state == "cancelled":
        services.referral_cancel(actor=sender, referral=referral, reason=context.rng.choice(CANCEL_REASONS))
        plan.ended = submitted + min(dt.timedelta(minutes=accept_minutes * 0.3), age * 0.5)
        context.plans.append(plan)
    else:
        slot = _free_slot(destination, department, context) if state == "scheduled" else None
        bed = _free_bed(destination, department) if state == "bed" else None
        note = ACK_NOTE if direction == Direction.DOWN else context.rng.choice(ACCEPT_NOTES)
        try:
            services.referral_accept(
                actor=receiver,
                referral=referral,
                note=note,
                slot=slot,
                bed=bed,
                instructions=INSTRUCTIONS if slot or bed else "",
                follow_ups=specs,
            )
        except ValidationError:  # no free unit left: accepted without a booking
            services.referral_accept(actor=receiver, referral=referral, note=note, follow_ups=specs)
        plan.accepted = accepted
        days_of = {what: days for days, what in case.follow_ups}
        for task in FollowUpTask.objects.filter(referral=referral):
            plan.follow_up_days[task.pk] = days_of.get(task.what_to_check, 14)
        if state in ("bed", "arrived", "completed"):
            services.referral_confirm_arrival(actor=receiver, referral=referral)
            travel = dt.timedelta(hours=1 if case.urgency == Urgency.EMERGENCY else 20)
            plan.arrived = accepted + min(travel, (context.now - accepted) * 0.5)
        if state == "completed":
            if direction == Direction.DOWN:
                first = FollowUpTask.objects.filter(referral=referral).order_by("due_date").first()
                if first is not None:
                    services.follow_up_done(actor=receiver, task=first, result="血压 132/84 mmHg，按时服药，无不适。")
                    plan.follow_ups_done = (plan.arrived or accepted) + min(dt.timedelta(days=6), (context.now - accepted) * 0.4)
            services.referral_complete(actor=receiver, referral=referral, result_summary=case.result)
            arrived = plan.arrived or accepted
            stay = dt.timedelta(days=7 if direction == Direction.UP else 10)
            plan.completed = arrived + min(stay, (context.now - arrived) * 0.6)
        context.plans.append(plan)
    context.counts[state] = context.counts.get(state, 0) + 1
    return referral


def _cases(context: _Context, pool: tuple[Case, ...], n: int) -> list[Case]:
    return [pool[(i + context.rng.randrange(len(pool))) % len(pool)] for i in range(n)]


# States of the up referrals each other township of the lead's consortium sends (the board's volume):
# (state, hours ago); a negative figure is a multiple of the case's acceptance window, so a new one
# is not yet overdue and an escalated one not yet expired whatever its urgency.
_TOWNSHIP_STATES: tuple[tuple[str, float], ...] = (
    ("submitted", -0.3),
    ("escalated", -1.5),
    ("accepted", 26),
    ("scheduled", 50),
    ("arrived", 30),
    ("completed", 24 * 12),
    ("rejected", 24 * 6),
    ("cancelled", 24 * 9),
)


def _k1_stories(context: _Context, consortium: Consortium) -> None:
    """The personas' referrals in the lead hospital's consortium, and the other townships'."""
    lead = consortium.lead_institution
    township = Institution.objects.filter(name="水步镇卫生院").first()
    village = Institution.objects.filter(name="水步镇石龙村卫生站").first()
    township_doctor = _actor("township_doctor", township) if township else None
    village_doctor = _actor("village_doctor")
    lead_doctor = _actor("lead_doctor", lead)
    coordinator = _actor("coordinator", lead)
    if township is None or township_doctor is None or coordinator is None:
        return
    shuibu = [township, *Institution.objects.filter(parent=township)]
    by_name = {c.diagnosis + c.code: c for c in UP_CASES}

    def up(state: str, hours: float, key: str, receiver: Actor | None = None) -> None:
        patient = _patient(context, township_doctor, shuibu)
        if patient is not None:
            _tell(
                context,
                _Story(state, hours, by_name[key]),
                sender=township_doctor,
                receiver=receiver or coordinator,
                patient=patient,
                direction=Direction.UP,
                destination=lead,
            )

    # 黄晓敏's outbox: every state, from the emergency of ten minutes ago to the closed ones.
    up("submitted", 0.15, "急性冠脉综合征？I20.0")
    up("escalated", 6, "原发性高血压I10")
    up("overdue", 54, "2型糖尿病伴有肾的并发症E11.2")  # routine: 48 h to accept; the demo's timer escalates it
    up("accepted", 20, "慢性阻塞性肺病伴有急性加重J44.1")
    up("scheduled", 44, "高血压（疑似继发性）I10")
    up("scheduled", 30, "2型糖尿病E11.9")
    up("scheduled", 70, "心房颤动I48")
    up("accepted", 8, "心房颤动I48", lead_doctor)  # his department's referral, accepted by himself
    up("bed", 5, "脑梗死I63.9")
    up("arrived", 28, "股骨颈骨折S72.0")
    up("completed", 24 * 20, "急性冠脉综合征？I20.0")
    up("completed", 24 * 16, "心力衰竭I50.9", lead_doctor)
    up("rejected", 24 * 4, "桡骨下端骨折S52.5")
    up("cancelled", 24 * 8, "消化道出血K92.2")
    up("expired", 24 * 17, "2型糖尿病 低血糖症E11.9")

    # 陈国栋 refers his villagers up to 水步镇卫生院 (黄晓敏's inbox).
    if village is not None and village_doctor is not None:
        for state, hours, case in (
            ("submitted", 2, DOWN_CASES[0]),
            ("completed", 24 * 11, DOWN_CASES[3]),
        ):
            patient = _patient(context, village_doctor, [village])
            if patient is None:
                continue
            village_case = Case(
                case.diagnosis,
                case.code,
                Urgency.ROUTINE if state == "completed" else Urgency.URGENT,
                "",
                "规律服药，血压连续两次随访未达标（162/96、158/98 mmHg），请卫生院调整用药。"
                if case.code == "I10"
                else "空腹血糖连续两次≥9 mmol/L，请卫生院调整降糖方案。",
                case.summary,
                "已调整用药，2周后复测达标，转回村卫生站随访。",
                ("连续两次随访",),
            )
            _tell(
                context,
                _Story(state, hours, village_case),
                sender=village_doctor,
                receiver=township_doctor,
                patient=patient,
                direction=Direction.UP,
                destination=township,
            )

    # 伍志强 sends his cardiology patients home (down) to 水步: waiting for acknowledgment, overdue,
    # acknowledged with follow-up tasks for the village doctor, arrived, completed, rejected.
    if lead_doctor is not None:
        for state, hours, case in (
            ("submitted", 20, DOWN_CASES[0]),
            ("submitted", 6, DOWN_CASES[3]),
            ("escalated", 24 * 3, DOWN_CASES[1]),
            ("accepted", 24 * 5, DOWN_CASES[0]),
            ("accepted", 24 * 2, DOWN_CASES[2]),
            ("arrived", 24 * 6, DOWN_CASES[1]),
            ("completed", 24 * 19, DOWN_CASES[0]),
            ("rejected", 24 * 9, DOWN_CASES[5]),
        ):
            # 石龙村's residents first, so 陈国栋 holds follow-up tasks; the others' family doctor is 黄晓敏.
            patient = (_patient(context, lead_doctor, [village], at=lead) if village else None) or _patient(
                context, lead_doctor, shuibu, at=lead
            )
            if patient is None:
                continue
            doctor = village_doctor.user if village_doctor and village and patient.home_institution_id == village.pk else None
            _tell(
                context,
                _Story(state, hours, case),
                sender=lead_doctor,
                receiver=township_doctor,
                patient=patient,
                direction=Direction.DOWN,
                destination=township,
                follow_up_doctor=doctor or township_doctor.user,
            )

    # The other townships of the consortium: a few up referrals each, for the coordinator's board.
    townships = Institution.objects.filter(
        consortium_memberships__consortium=consortium,
        kind__in=[InstitutionKind.TOWNSHIP_CENTRE, InstitutionKind.COMMUNITY_CENTRE],
    ).exclude(pk=township.pk)
    for n, other in enumerate(townships.order_by("name")):
        sender = _staff_actor(other)
        if sender is None:
            continue
        held = [other, *Institution.objects.filter(parent=other)]
        for k in range(3):
            state, age = _TOWNSHIP_STATES[(n * 3 + k) % len(_TOWNSHIP_STATES)]
            patient = _patient(context, sender, held)
            if patient is None:
                break
            case = UP_CASES[(n * 3 + k) % len(UP_CASES)]
            if state == "scheduled" and other.kind != InstitutionKind.TOWNSHIP_CENTRE:
                state = "accepted"  # the lead's reserved units are the townships' (scheduling's demo bookings too)
            if age < 0:
                age = -age * deadlines_for(consortium, case.urgency)[0] / 60
            _tell(
                context,
                _Story(state, age * context.rng.uniform(0.9, 1.1), case),
                sender=sender,
                receiver=coordinator,
                patient=patient,
                direction=Direction.UP,
                destination=lead,
            )

    # A lateral referral between the consortium's two hospitals (dialysis capacity).
    second = (
        Institution.objects.filter(
            consortium_memberships__consortium=consortium,
            kind=InstitutionKind.GENERAL_HOSPITAL,
            capabilities__capability="dialysis",
        )
        .exclude(pk=lead.pk)
        .first()
    )
    nephrologist = _staff_actor(lead, department="肾内科")
    receiver = (_staff_actor(second, department="肾内科") or _staff_actor(second)) if second else None
    if second is not None and nephrologist is not None and receiver is not None:
        for state, hours in (("submitted", 9), ("completed", 24 * 14)):
            patient = _patient(
                context, nephrologist, list(Institution.objects.filter(consortium_memberships__consortium=consortium)), at=lead
            )
            if patient is not None:
                _tell(
                    context,
                    _Story(state, hours, LATERAL_CASE),
                    sender=nephrologist,
                    receiver=receiver,
                    patient=patient,
                    direction=Direction.LATERAL,
                    destination=second,
                )


def _k2_stories(context: _Context, consortium: Consortium) -> None:
    """余德明 (tcm_doctor) receives at 台山市中医院 中医内科: one new, one accepted, one completed."""
    lead = consortium.lead_institution
    tcm = _actor("tcm_doctor", lead)
    if tcm is None or tcm.membership is None or tcm.membership.department is None:
        return
    department = tcm.membership.department.name
    townships = Institution.objects.filter(
        consortium_memberships__consortium=consortium, kind=InstitutionKind.TOWNSHIP_CENTRE
    ).order_by("name")
    for (state, hours), township, case in zip(
        (("submitted", 3), ("accepted", 30), ("completed", 24 * 12)),
        townships,
        (UP_CASES[7], UP_CASES[1], UP_CASES[4]),
        strict=False,
    ):
        sender = _staff_actor(township)
        if sender is None:
            continue
        patient = _patient(context, sender, [township, *Institution.objects.filter(parent=township)])
        if patient is None:
            continue
        tcm_case = Case(
            case.diagnosis, case.code, case.urgency, department, case.reason, case.summary,
            "中西医结合治疗后症状缓解：" + case.result, case.criteria,
        )  # fmt: skip
        _tell(
            context,
            _Story(state, hours, tcm_case),
            sender=sender,
            receiver=tcm,
            patient=patient,
            direction=Direction.UP,
            destination=lead,
        )


# --- bulk history ----------------------------------------------------------------------------------


@dataclass
class _Member:
    institution: Institution
    consortium: Consortium
    clinicians: list[int]  # user ids
    village_doctor: int | None = None


def _history_world(
    authority_ids: list[int],
) -> tuple[dict[int, _Member], dict[int, list[Institution]], dict[tuple[int, str], int]]:
    """Members of the demo county's consortia with their clinicians, each consortium's hospitals,
    and the hospitals' departments by name."""
    consortia = {c.pk: c for c in Consortium.objects.filter(authority_id__in=authority_ids).select_related("lead_institution")}
    members: dict[int, _Member] = {}
    hospitals: dict[int, list[Institution]] = {}
    for row in ConsortiumMembership.objects.current().filter(consortium_id__in=consortia).select_related("institution"):
        institution = row.institution
        members[institution.pk] = _Member(institution, consortia[row.consortium_id], [])
        if services.tier(institution) == 2:
            hospitals.setdefault(row.consortium_id, []).append(institution)
    for consortium_id, listed in hospitals.items():
        lead_id = consortia[consortium_id].lead_institution_id
        listed.sort(key=lambda i: (i.pk != lead_id, i.pk))
    for membership in Membership.objects.filter(
        institution_id__in=members, role__in=[Role.CLINICIAN, Role.VILLAGE_DOCTOR], ended_on__isnull=True
    ).order_by("pk"):
        member = members[membership.institution_id]  # type: ignore[index]
        member.clinicians.append(membership.user_id)
        if membership.role == Role.VILLAGE_DOCTOR and member.village_doctor is None:
            member.village_doctor = membership.user_id
    departments = {
        (d.institution_id, d.name): d.pk for d in Department.objects.filter(institution_id__in=members, is_active=True)
    }
    return members, hospitals, departments


def referral_history_insert(
    *,
    count: int,
    seed: int,
    now: dt.datetime | None = None,
    days: int = HISTORY_DAYS,
    batch_size: int = 2000,
    progress: Callable[[int], None] | None = None,
) -> dict[str, int]:
    """Insert `count` closed referrals of the demo county, submitted between `days` and 31 days
    ago, with their events, grants and (down) follow-up tasks, in batches. Consistent with what the
    services leave: one event per step, a grant per referral (revoked at the end, or ending
    REFERRAL_GRANT_AFTER_COMPLETION_DAYS after completion), follow-up tasks on completed down
    referrals; closed, so the one-open-referral-per-patient rule is not in play."""
    if count <= 0:
        return {}
    rng = random.Random(f"yilian-demo:{seed}:referral-history")
    now = now or timezone.now()
    authority_ids = list(
        Institution.objects.filter(authority__division_code=taishan.DIVISION_CODE)
        .values_list("authority_id", flat=True)
        .distinct()
    )
    members, hospitals, departments = _history_world(authority_ids)
    patients = list(
        Patient.objects.filter(home_institution_id__in=members, merged_into__isnull=True)
        .order_by("pk")
        .values_list("pk", "home_institution_id")
    )
    if not patients or not hospitals:
        return {}
    coordinators: dict[int, int] = dict(
        Membership.objects.filter(role=Role.REFERRAL_COORDINATOR, institution_id__in=members, ended_on__isnull=True)
        .order_by("-pk")
        .values_list("institution_id", "user_id")
    )
    users = {
        u.pk: u.full_name or u.username for u in User.objects.filter(pk__in={i for m in members.values() for i in m.clinicians})
    }
    criteria = {(c.direction, c.text): c for c in ReferralCriterion.objects.filter(consortium__isnull=True, is_active=True)}
    deadlines: dict[tuple[int, str], tuple[int, int]] = {}
    counts = {"历史转诊": 0, "历史转诊记录": 0, "历史随访任务": 0}
    per_day: dict[str, int] = {}  # history numbers: ZZ<day>9<nnnnn>, after any inserted before
    for number in Referral.objects.filter(number__startswith="ZZ", submitted_at__lt=now).values_list("number", flat=True):
        if len(number) == 16 and number[10] == "9" and number[11:].isdigit():
            per_day[number[2:10]] = max(per_day.get(number[2:10], 0), int(number[11:]))
    grant_days = dt.timedelta(days=settings.REFERRAL_GRANT_DAYS)
    after_completion = dt.timedelta(days=settings.REFERRAL_GRANT_AFTER_COMPLETION_DAYS)
    span = (days - HISTORY_MIN_AGE_DAYS) * 24 * 3600

    def catalogue(case: Case, direction: str) -> list[dict[str, object]]:
        lines = [c for (d, text), c in criteria.items() if d == direction and any(text.startswith(p) for p in case.criteria)]
        return [{"id": c.pk, "disease": c.disease, "text": c.text} for c in lines]

    done = 0
    while done < count:
        size = min(batch_size, count - done)
        rows: list[tuple[Referral, AccessGrant, list[ReferralEvent], list[FollowUpTask]]] = []
        tries = 0
        while len(rows) < size and tries < 50 * size:  # a county without clinicians somewhere gives up
            tries += 1
            patient_id, home_id = rng.choice(patients)
            home = members[home_id].institution
            consortium = members[home_id].consortium
            township = members.get(home.parent_id) if home.parent_id else members[home_id]  # type: ignore[arg-type]
            if township is None or services.tier(township.institution) != 1:
                continue
            pair = hospitals.get(consortium.pk, [])
            if not pair:
                continue
            roll = rng.random()
            if roll < 0.78:
                direction = Direction.UP
                case = rng.choice(UP_CASES)
                if home.kind == InstitutionKind.VILLAGE_CLINIC and rng.random() < 0.2:
                    sender, destination = members[home_id], township
                else:
                    sender = township
                    destination = members[pair[0].pk] if len(pair) == 1 or rng.random() < 0.8 else members[pair[1].pk]
            elif roll < 0.97 or len(pair) < 2:
                direction = Direction.DOWN
                case = rng.choice(DOWN_CASES)
                sender = members[pair[0].pk] if rng.random() < 0.85 else members[pair[-1].pk]
                destination = township
            else:
                direction = Direction.LATERAL
                case = LATERAL_CASE
                sender, destination = members[pair[0].pk], members[pair[1].pk]
            if not sender.clinicians or not destination.clinicians:
                continue
            department_id = departments.get((destination.institution.pk, case.department or "全科医学科"))
            key = (consortium.pk, case.urgency)
            if key not in deadlines:
                deadlines[key] = deadlines_for(consortium, case.urgency)
            accept_minutes, expire_minutes = deadlines[key]
            submitted = now - dt.timedelta(days=HISTORY_MIN_AGE_DAYS, seconds=rng.randrange(span))
            accept_by = submitted + dt.timedelta(minutes=accept_minutes)
            expires = submitted + dt.timedelta(minutes=expire_minutes)
            sender_user = rng.choice(sender.clinicians)
            coordinator = coordinators.get(destination.institution.pk)
            if coordinator is not None and direction != Direction.DOWN and rng.random() < 0.6:
                receiver_user = coordinator
            else:
                receiver_user = rng.choice(destination.clinicians)
            status = rng.choices((S.COMPLETED, S.REJECTED, S.CANCELLED, S.EXPIRED), (70, 10, 12, 8))[0]
            day = timezone.localtime(submitted).strftime("%Y%m%d")
            per_day[day] = per_day.get(day, 0) + 1
            number = f"ZZ{day}9{per_day[day]:05d}"
            referral = Referral(
                uuid=uuid.UUID(int=rng.getrandbits(128), version=4),
                number=number,
                patient_id=patient_id,
                consortium=consortium,
                direction=direction,
                urgency=case.urgency,
                status=status,
                sender_institution=sender.institution,
                sender_user_id=sender_user,
                sender_name=users.get(sender_user, ""),
                destination_institution=destination.institution,
                destination_department_id=department_id,
                reason=case.reason,
                diagnosis_code=case.code,
                diagnosis_name=case.diagnosis,
                clinical_summary=case.summary,
                criteria=catalogue(case, direction),
                required_capability=case.capability if case.capability and direction != Direction.DOWN else "",
                submitted_at=submitted,
                accept_by=accept_by,
                expires_at=expires,
            )
            grant = AccessGrant(
                uuid=uuid.UUID(int=rng.getrandbits(128), version=4),
                patient_id=patient_id,
                grantee_institution=destination.institution,
                acting_institution=sender.institution,
                scope=GrantScope.RECORD,
                source=GrantSource.REFERRAL,
                source_reference=number,
                reason=case.reason,
                granted_by_id=sender_user,
                starts_at=submitted,
                expires_at=submitted + grant_days,
            )
            events = [
                ReferralEvent(
                    at=submitted, kind=K.SUBMITTED, user_id=sender_user, institution=sender.institution, note=case.reason[:500]
                )
            ]
            follow_ups: list[FollowUpTask] = []
            escalated = status == S.EXPIRED or rng.random() < 0.12
            answered = submitted + dt.timedelta(
                minutes=accept_minutes * (rng.uniform(1.05, 2.0) if escalated else rng.uniform(0.05, 0.9))
            )
            if escalated:
                referral.escalated_at = accept_by + dt.timedelta(minutes=1)
                events.append(ReferralEvent(at=referral.escalated_at, kind=K.ESCALATED, note="超过接收时限 1 分钟"))
            if status == S.EXPIRED:
                referral.ended_at = expires
                referral.end_reason = "超时未处理，自动过期"
                events.append(ReferralEvent(at=expires, kind=K.EXPIRED, note=referral.end_reason))
                grant.revoked_at = expires
            elif status == S.REJECTED:
                reason = DOWN_REJECT_REASON if direction == Direction.DOWN else rng.choice(REJECT_REASONS)
                referral.ended_at, referral.end_reason = answered, reason
                events.append(
                    ReferralEvent(
                        at=answered, kind=K.REJECTED, user_id=receiver_user, institution=destination.institution, note=reason
                    )
                )
                grant.revoked_at, grant.revoked_by_id = answered, receiver_user
            elif status == S.CANCELLED:
                reason = rng.choice(CANCEL_REASONS)
                ended = submitted + (answered - submitted) * rng.uniform(0.2, 0.9)
                referral.ended_at, referral.end_reason = ended, reason
                events.append(
                    ReferralEvent(at=ended, kind=K.CANCELLED, user_id=sender_user, institution=sender.institution, note=reason)
                )
                grant.revoked_at, grant.revoked_by_id = ended, sender_user
            else:
                note = ACK_NOTE if direction == Direction.DOWN else rng.choice(ACCEPT_NOTES)
                referral.accepted_at, referral.accepted_by_id, referral.receiver_note = answered, receiver_user, note
                events.append(
                    ReferralEvent(
                        at=answered, kind=K.ACCEPTED, user_id=receiver_user, institution=destination.institution, note=note
                    )
                )
                if direction == Direction.DOWN:
                    responsible = members[home_id].village_doctor or rng.choice(destination.clinicians)
                    for n, (offset, what) in enumerate(case.follow_ups or ((14, "随访病情与用药"),)):
                        due = timezone.localtime(answered).date() + dt.timedelta(days=offset)
                        follow_ups.append(
                            FollowUpTask(
                                uuid=uuid.UUID(int=rng.getrandbits(128), version=4),
                                patient_id=patient_id,
                                institution=destination.institution,
                                responsible_id=responsible,
                                due_date=due,
                                what_to_check=what,
                                status=FollowUpStatus.DONE if n == 0 or due < timezone.localdate() else FollowUpStatus.OPEN,
                                created_by_id=receiver_user,
                            )
                        )
                        events.append(
                            ReferralEvent(
                                at=answered,
                                kind=K.FOLLOW_UP,
                                user_id=receiver_user,
                                institution=destination.institution,
                                note=f"{due:%Y-%m-%d} {what}",
                            )
                        )
                arrived = answered + dt.timedelta(
                    hours=rng.uniform(1, 6) if case.urgency == Urgency.EMERGENCY else rng.uniform(12, 120)
                )
                completed = arrived + dt.timedelta(days=rng.uniform(0.2, 12))
                referral.expires_at = answered + dt.timedelta(days=settings.REFERRAL_ARRIVAL_GRACE_DAYS)
                referral.arrived_at, referral.arrival_source = arrived, "接收方确认"
                referral.completed_at, referral.completed_by_id, referral.ended_at = completed, receiver_user, completed
                referral.result_summary = case.result
                events.append(
                    ReferralEvent(
                        at=arrived, kind=K.ARRIVED, user_id=receiver_user, institution=destination.institution, note="接收方确认"
                    )
                )
                events.append(
                    ReferralEvent(
                        at=completed,
                        kind=K.COMPLETED,
                        user_id=receiver_user,
                        institution=destination.institution,
                        note=case.result[:500],
                    )
                )
                grant.expires_at = max(
                    grant.starts_at + dt.timedelta(seconds=1), min(grant.expires_at, completed + after_completion)
                )
                for task in follow_ups:
                    if task.status == FollowUpStatus.DONE:
                        task.done_at = max(completed, dt.datetime.combine(task.due_date, dt.time(10), tzinfo=completed.tzinfo))
                        task.result = "已面对面随访，病情稳定，按时服药。"
            rows.append((referral, grant, events, follow_ups))
        if not rows:
            break
        grants = AccessGrant.objects.bulk_create([g for _, g, _, _ in rows], batch_size=batch_size)
        for (referral, _, _, _), grant in zip(rows, grants, strict=True):
            referral.grant = grant
        referrals = Referral.objects.bulk_create([r for r, _, _, _ in rows], batch_size=batch_size)
        event_rows, task_rows = [], []
        for referral, (_, _, events, tasks) in zip(referrals, rows, strict=True):
            for event in events:
                event.referral = referral
            for task in tasks:
                task.referral = referral
            event_rows += events
            task_rows += tasks
        ReferralEvent.objects.bulk_create(event_rows, batch_size=5000)
        FollowUpTask.objects.bulk_create(task_rows, batch_size=5000)
        counts["历史转诊"] += len(referrals)
        counts["历史转诊记录"] += len(event_rows)
        counts["历史随访任务"] += len(task_rows)
        done += size
        if progress is not None:
            progress(size)
    return counts


# --- the whole demo ----------------------------------------------------------------------------------


def demo_referrals_load(*, seed: int, history: int = DEFAULT_HISTORY) -> dict[str, int]:
    """Recent referrals through the services around the personas, the escalation and expiry of the
    old ones, then `history` closed referrals in bulk. Texts to residents are not printed (they
    would have been sent long ago)."""
    rng = random.Random(f"yilian-demo:{seed}:referrals")
    now = timezone.now()
    criteria: dict[tuple[str, str], list[ReferralCriterion]] = {}
    for line in ReferralCriterion.objects.filter(consortium__isnull=True, is_active=True).order_by("position", "pk"):
        criteria.setdefault(("", line.direction), []).append(line)
    context = _Context(rng=rng, now=now, criteria=criteria)
    # Two transactions: the services' notifications are written when the first commits, so the
    # second can move their referral numbers and dates along with the referrals.
    with contextlib.redirect_stdout(io.StringIO()):
        with transaction.atomic():
            for spec in taishan.CONSORTIA:
                consortium = Consortium.objects.filter(name=spec.name).select_related("lead_institution").first()
                if consortium is None:
                    continue
                if spec.key == taishan.K1:
                    _k1_stories(context, consortium)
                else:
                    _k2_stories(context, consortium)
        counts = _settle(context, seed=seed, history=history)
    result = {"转诊": Referral.objects.filter(consortium__authority__division_code=taishan.DIVISION_CODE).count()}
    result |= counts
    return result


@transaction.atomic
def _settle(context: _Context, *, seed: int, history: int) -> dict[str, int]:
    """Move the recent referrals to their times, let the services escalate and expire the old ones,
    then add the bulk history."""
    now = context.now
    for plan in context.plans:
        _retime(plan)
    services.referrals_escalate(now=now)
    services.referrals_expire(now=now)
    for plan in [*context.plans, *context.late_plans]:
        _retime(plan)
    return referral_history_insert(count=history, seed=seed, now=now)
