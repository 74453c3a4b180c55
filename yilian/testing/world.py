"""A small, fully-formed consortium world for tests: two consortia of one bureau, a persona for
each kind of user, and a patient held at each level. Later capabilities extend it, not copy it.

    authority 台山市卫生健康局
    consortium K1 台山市人民医院医共体: lead A 台山市人民医院; members B 水步镇卫生院 (with village
        clinic V 水步镇石龙村卫生站), C 冲蒌镇卫生院
    consortium K2 台山市中医院医共体: lead T 台山市中医院; member D 大江镇卫生院
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from yilian.accounts.models import Membership, Practitioner, User
from yilian.accounts.roles import Role
from yilian.organizations.models import (
    CentreKind,
    Consortium,
    ConsortiumCentre,
    ConsortiumKind,
    ConsortiumMembership,
    Department,
    HealthAuthority,
    Institution,
    InstitutionKind,
    InstitutionLevel,
    MemberRole,
    ServiceGrid,
)
from yilian.patients.linkage import name_pinyin
from yilian.patients.models import LinkMethod, Patient, Sex, SourceIdentity

PASSWORD = "Yilian-Test-2026"
START = dt.date(2020, 1, 1)

# The personas of the authorisation matrix, in the order reports print them.
PERSONAS = (
    "lead_clinician",
    "township_clinician",
    "village_doctor",
    "consortium_manager",
    "bureau_supervisor",
    "other_consortium_user",
    "anonymous",
)


@dataclass
class World:
    authority: HealthAuthority
    k1: Consortium
    k2: Consortium
    a: Institution
    b: Institution
    c: Institution
    v: Institution
    t: Institution
    d: Institution
    cardiology: Department
    b_general: Department
    grid_b: ServiceGrid
    users: dict[str, User] = field(default_factory=dict)
    patients: dict[str, Patient] = field(default_factory=dict)

    def user(self, persona: str) -> User:
        return self.users[persona]


def _institution(
    authority: HealthAuthority, name: str, kind: str, level: str, town: str, parent: Institution | None = None
) -> Institution:
    return Institution.objects.create(
        authority=authority, name=name, short_name=name.replace("台山市", ""), kind=kind, level=level, town=town, parent=parent
    )


def _consortium(authority: HealthAuthority, name: str, lead: Institution, members: list[Institution]) -> Consortium:
    consortium = Consortium.objects.create(
        authority=authority,
        name=name,
        short_name=name.replace("台山市", "").replace("医疗卫生共同体", "医共体"),
        kind=ConsortiumKind.COUNTY_COMMUNITY,
        lead_institution=lead,
        established_on=START,
    )
    ConsortiumMembership.objects.create(consortium=consortium, institution=lead, role=MemberRole.LEAD, joined_on=START)
    for member in members:
        ConsortiumMembership.objects.create(consortium=consortium, institution=member, role=MemberRole.MEMBER, joined_on=START)
    ConsortiumCentre.objects.bulk_create(
        [ConsortiumCentre(consortium=consortium, kind=kind, host_institution=lead) for kind in CentreKind.values]
    )
    return consortium


def make_user(username: str, full_name: str, *, superuser: bool = False) -> User:
    user = User(username=username, full_name=full_name, is_superuser=superuser, is_staff=superuser)
    user.set_password(PASSWORD)
    user.save()
    return user


def add_membership(
    user: User,
    role: str,
    *,
    institution: Institution | None = None,
    authority: HealthAuthority | None = None,
    department: Department | None = None,
) -> Membership:
    return Membership.objects.create(
        user=user, role=role, institution=institution, authority=authority, department=department, started_on=START
    )


def build_world() -> World:
    authority = HealthAuthority.objects.create(name="台山市卫生健康局", division_code="440781")
    a = _institution(authority, "台山市人民医院", InstitutionKind.GENERAL_HOSPITAL, InstitutionLevel.TERTIARY, "台城街道")
    b = _institution(authority, "水步镇卫生院", InstitutionKind.TOWNSHIP_CENTRE, InstitutionLevel.PRIMARY, "水步镇")
    c = _institution(authority, "冲蒌镇卫生院", InstitutionKind.TOWNSHIP_CENTRE, InstitutionLevel.PRIMARY, "冲蒌镇")
    v = _institution(
        authority, "水步镇石龙村卫生站", InstitutionKind.VILLAGE_CLINIC, InstitutionLevel.UNGRADED, "水步镇", parent=b
    )
    t = _institution(authority, "台山市中医院", InstitutionKind.TCM_HOSPITAL, InstitutionLevel.SECONDARY, "台城街道")
    d = _institution(authority, "大江镇卫生院", InstitutionKind.TOWNSHIP_CENTRE, InstitutionLevel.PRIMARY, "大江镇")
    k1 = _consortium(authority, "台山市人民医院医疗卫生共同体", a, [b, c, v])
    k2 = _consortium(authority, "台山市中医院医疗卫生共同体", t, [d])
    cardiology = Department.objects.create(institution=a, name="心血管内科", code="0301", beds=60)
    b_general = Department.objects.create(institution=b, name="全科医学科", code="0701", beds=20)
    grid_b = ServiceGrid.objects.create(consortium=k1, responsible_institution=v, name="石龙村", town="水步镇", population=2380)
    world = World(authority, k1, k2, a, b, c, v, t, d, cardiology, b_general, grid_b)

    def persona(key: str, full_name: str, role: str, **place: object) -> User:
        user = make_user(key, full_name)
        add_membership(user, role, **place)  # type: ignore[arg-type]
        world.users[key] = user
        return user

    lead = persona("lead_clinician", "李志强", Role.CLINICIAN, institution=a, department=cardiology)
    Practitioner.objects.create(user=lead, title="chief_physician", specialty="心血管内科", certificate_number="110440781000001")
    township = persona("township_clinician", "黄晓敏", Role.CLINICIAN, institution=b, department=b_general)
    add_membership(township, Role.CLINICIAN, institution=c)  # 多点执业: also works at C
    persona("village_doctor", "陈伯", Role.VILLAGE_DOCTOR, institution=v)
    persona("consortium_manager", "梁主任", Role.CONSORTIUM_MANAGER, institution=a)
    persona("bureau_supervisor", "伍科长", Role.BUREAU_SUPERVISOR, authority=authority)
    persona("other_consortium_user", "甄医生", Role.CLINICIAN, institution=t)
    persona("institution_admin", "邝管理", Role.INSTITUTION_ADMIN, institution=b)
    persona("privacy_officer", "雷专员", Role.PRIVACY_OFFICER, institution=a)
    persona("hr_officer", "谭人事", Role.HR_OFFICER, institution=a)
    world.users["system_admin"] = make_user("system_admin", "系统管理员", superuser=True)

    def patient(key: str, name: str, home: Institution, id_number: str, sex: str = Sex.MALE) -> None:
        world.patients[key] = Patient.objects.create(
            name=name,
            sex=sex,
            birth_date=dt.date(1958, 3, 7),
            id_number=id_number,
            id_number_valid=True,
            phone="13800000000",
            address=f"{home.town}某村1号",
            town=home.town,
            home_institution=home,
            grid=grid_b if home == v else None,
        )
        # The master patient index: the registering institution's own identity of the patient.
        p = world.patients[key]
        SourceIdentity.objects.create(
            institution=home,
            local_id=f"P{p.pk:06d}",
            name=p.name,
            sex=p.sex,
            birth_date=p.birth_date,
            id_number=p.id_number,
            id_number_valid=True,
            phone=p.phone,
            address=p.address,
            town=p.town,
            patient=p,
            link_method=LinkMethod.NEW,
            name_key=name_pinyin(p.name),
            phone_key=p.phone[-8:],
        )

    patient("at_a", "伍国华", a, "440781195803070012")
    patient("at_b", "黄美玲", b, "440781196205120029", Sex.FEMALE)
    patient("at_v", "陈大明", v, "440781197001010033")
    patient("at_t", "甄伟", t, "440781198811110014")
    return world
