"""manage.py demo_county: the county it builds, its residents, determinism and re-runs."""

from __future__ import annotations

import datetime as dt
import hashlib
from collections import Counter
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.db import connection
from django.utils import timezone

from yilian.access.models import AccessAction, AccessBasis, AccessGrant, AccessLog, GrantSource
from yilian.accounts.models import Membership, User
from yilian.accounts.roles import Role
from yilian.core.validators import national_id_check_character, national_id_problem, validate_credit_code
from yilian.demo import residents as resident_module
from yilian.demo import taishan
from yilian.demo.services import demo_county_build
from yilian.notifications.models import Notification
from yilian.organizations.models import (
    CentreKind,
    Consortium,
    ConsortiumMembership,
    Department,
    GridKind,
    HealthAuthority,
    Institution,
    InstitutionCapability,
    InstitutionKind,
    MemberRole,
    ServiceGrid,
)
from yilian.patients.models import Patient, Sex

pytestmark = pytest.mark.django_db

# Named in taishan.md, consortium by consortium (city hospitals by their usual short names).
NAMED_MEMBERS = {
    "台山市人民医院医疗卫生共同体": (
        "台山市人民医院", "台山市第二人民医院", "台城社区卫生服务中心", "水步镇卫生院", "冲蒌镇卫生院", "都斛镇卫生院",
        "端芬镇卫生院", "汶村镇中心卫生院", "深井镇卫生院", "北陡镇卫生院", "川岛镇上川卫生院",
    ),
    "台山市中医院医疗卫生共同体": (
        "台山市中医院", "城区人民医院", "大江镇卫生院", "四九镇卫生院", "白沙镇中心卫生院", "三合镇卫生院",
        "斗山镇中心卫生院", "赤溪镇卫生院", "广海镇中心卫生院", "海宴镇卫生院", "川岛镇下川卫生院",
    ),
}  # fmt: skip
LEADS = {"台山市人民医院医疗卫生共同体": "台山市人民医院", "台山市中医院医疗卫生共同体": "台山市中医院"}
REAL_TOWNS = set(taishan.TOWNS)


def build(residents: int = 400, seed: int = 2026, *options: str) -> str:
    out = StringIO()
    call_command("demo_county", f"--residents={residents}", f"--seed={seed}", "--quiet", *options, stdout=out)
    return out.getvalue()


def fingerprint() -> str:
    digest = hashlib.sha256()
    querysets = (
        Patient.objects.order_by("uuid").values_list("uuid", "name", "id_number", "birth_date", "phone", "address"),
        User.objects.order_by("username").values_list("username", "uuid", "full_name"),
        Institution.objects.order_by("name").values_list("name", "uuid", "credit_code", "phone"),
        ServiceGrid.objects.order_by("uuid").values_list("uuid", "name", "population"),
    )
    for queryset in querysets:
        for row in queryset:
            digest.update(repr(row).encode())
    return digest.hexdigest()


def row_counts() -> dict[str, int]:
    models = (HealthAuthority, Institution, Consortium, ConsortiumMembership, Department, ServiceGrid, User, Membership,
              Patient, Notification, InstitutionCapability)  # fmt: skip
    return {m.__name__: m.objects.count() for m in models}


def current_member(consortium: Consortium, name: str) -> ConsortiumMembership:
    return (
        ConsortiumMembership.objects.current()
        .select_related("institution")
        .get(consortium=consortium, institution__in=Institution.objects.filter(name__in=[name, f"台山市{name}"]))
    )


def test_every_named_member_is_in_its_consortium_with_its_role():
    output = build()
    assert taishan.DEMO_PASSWORD in output
    authority = HealthAuthority.objects.get(division_code="440781")
    assert authority.name == "台山市卫生健康局"
    for consortium_name, members in NAMED_MEMBERS.items():
        consortium = Consortium.objects.get(name=consortium_name, authority=authority)
        assert consortium.kind == "county_community"
        assert consortium.lead_institution.name == LEADS[consortium_name]
        for name in members:
            membership = current_member(consortium, name)
            expected_role = MemberRole.LEAD if name == LEADS[consortium_name] else None
            if expected_role:
                assert membership.role == expected_role
            assert membership.institution.town in REAL_TOWNS
        roles = {m.institution.name: m.role for m in consortium.memberships.select_related("institution")}
        assert Counter(roles.values())[MemberRole.LEAD] == 1
    k1, k2 = (Consortium.objects.get(name=n) for n in NAMED_MEMBERS)
    assert current_member(k1, "台山市第二人民医院").role == MemberRole.BACKBONE
    assert current_member(k2, "城区人民医院").role == MemberRole.BACKBONE
    assert not ConsortiumMembership.objects.filter(consortium=k1, institution__name__in=NAMED_MEMBERS[k2.name]).exists()
    assert not ConsortiumMembership.objects.filter(consortium=k2, institution__name__in=NAMED_MEMBERS[k1.name]).exists()
    for consortium in (k1, k2):
        centres = {c.kind: c.host_institution_id for c in consortium.centres.all()}
        assert set(centres) == set(CentreKind.values)
        assert set(centres.values()) == {consortium.lead_institution_id}


def test_village_clinics_grids_departments_and_capabilities():
    build()
    towns = Counter(Institution.objects.filter(kind=InstitutionKind.VILLAGE_CLINIC).values_list("town", flat=True))
    assert set(towns) == REAL_TOWNS - {"台城街道"}
    assert all(5 <= n <= 10 for n in towns.values())  # 川岛镇 holds both islands' villages
    for clinic in Institution.objects.filter(kind=InstitutionKind.VILLAGE_CLINIC).select_related("parent"):
        assert clinic.name.startswith(clinic.town) and clinic.name.endswith("村卫生站")
        assert clinic.parent is not None and clinic.parent.kind == InstitutionKind.TOWNSHIP_CENTRE
        assert clinic.parent.town == clinic.town
        parent_consortia = set(clinic.parent.consortium_memberships.values_list("consortium", flat=True))
        assert set(clinic.consortium_memberships.values_list("consortium", flat=True)) == parent_consortia
        assert list(clinic.departments.values_list("name", flat=True)) == ["诊室"]

    grids = ServiceGrid.objects.select_related("responsible_institution", "consortium")
    assert grids.count() == Institution.objects.filter(kind=InstitutionKind.VILLAGE_CLINIC).count() + 8
    for grid in grids:
        assert 1200 <= grid.population <= 4500
        responsible = grid.responsible_institution
        if grid.kind == GridKind.VILLAGE:
            assert responsible.kind == InstitutionKind.VILLAGE_CLINIC and responsible.name == f"{grid.town}{grid.name}卫生站"
            centre = responsible.parent
        else:
            assert grid.town == "台城街道" and responsible.name == "台城社区卫生服务中心"
            centre = responsible
        assert centre is not None
        assert ConsortiumMembership.objects.current().filter(consortium=grid.consortium, institution=centre).exists()
    chuandao = {g.responsible_institution.parent.name: g.consortium.name for g in grids.filter(town="川岛镇")}  # type: ignore[union-attr]
    assert chuandao == {"川岛镇上川卫生院": "台山市人民医院医疗卫生共同体", "川岛镇下川卫生院": "台山市中医院医疗卫生共同体"}

    lead = Institution.objects.get(name="台山市人民医院")
    clinical = lead.departments.filter(is_clinical=True).count()
    assert clinical >= 20
    assert {"医务科", "转诊服务中心", "心血管内科", "医学检验科", "放射科"} <= set(
        lead.departments.values_list("name", flat=True)
    )
    township = Institution.objects.get(name="水步镇卫生院")
    assert set(township.departments.values_list("name", flat=True)) == {
        "全科医学科", "内科", "外科", "妇产科", "儿科", "中医科", "公共卫生科", "检验科", "放射科", "药房",
    }  # fmt: skip

    def capabilities(name: str) -> set[str]:
        return set(InstitutionCapability.objects.filter(institution__name=name).values_list("capability", flat=True))

    assert {"ct", "mri", "pci", "dialysis", "icu"} <= capabilities("台山市人民医院")
    assert {"ct", "mri", "dialysis", "icu"} <= capabilities("台山市中医院")
    assert {"ct", "dr", "ultrasound", "ecg"} <= capabilities("白沙镇中心卫生院")
    assert {"dr", "ultrasound", "ecg"} <= capabilities("水步镇卫生院")
    assert "ct" not in capabilities("水步镇卫生院")
    for institution in Institution.objects.all():
        assert institution.town in REAL_TOWNS
        if institution.credit_code is not None:
            validate_credit_code(institution.credit_code)
    assert Institution.objects.filter(credit_code__isnull=False).count() == 4 + len(taishan.HEALTH_CENTRES)


def test_residents_have_valid_unique_ids_matching_sex_and_birth_date_except_the_mistyped():
    build(3000, 2026, "--no-identities")  # the MPI's noisy duplicates add golden patients of their own
    residents = list(Patient.objects.select_related("grid"))
    assert len(residents) == 3000
    assert len({p.id_number for p in residents}) == 3000
    assert len({p.uuid for p in residents}) == 3000
    mistyped = 0
    for p in residents:
        number = p.id_number
        assert len(number) == 18 and number[:17].isdigit()
        problem = national_id_problem(number)
        if p.id_number_valid:
            assert problem is None, number
        else:
            mistyped += 1
            # Only the check character is wrong: the rest is a real number.
            assert number[17] != national_id_check_character(number[:17])
        assert int(number[14:17]) % 2 == (1 if p.sex == Sex.MALE else 0)
        assert p.birth_date == dt.date(int(number[6:10]), int(number[10:12]), int(number[12:14]))
        assert p.grid is not None and p.home_institution_id == p.grid.responsible_institution_id
        assert p.town == p.grid.town and p.address.startswith(f"台山市{p.grid.town}{p.grid.name}")
        assert p.phone.isdigit() and len(p.phone) == 11 and p.phone[0] == "1"
        assert 2 <= len(p.name) <= 4
    assert 3 <= mistyped <= 40  # about 0.5 %
    local = sum(p.id_number.startswith("440781") for p in residents)
    assert 0.9 * len(residents) < local < len(residents)  # a few were born elsewhere in Guangdong
    ages = [taishan.REFERENCE_DATE.year - p.birth_date.year for p in residents if p.birth_date]
    assert min(ages) >= 0 and max(ages) <= 100
    assert 0.15 < sum(a >= 60 for a in ages) / len(ages) < 0.35  # an ageing county
    assert 0.4 < sum(p.sex == Sex.MALE for p in residents) / len(residents) < 0.6


def test_every_persona_can_log_in_with_the_demo_password_and_acts_in_the_right_place():
    build(50)
    expected = {
        "lead_doctor": (Role.CLINICIAN, "台山市人民医院"),
        "township_doctor": (Role.CLINICIAN, "水步镇卫生院"),
        "village_doctor": (Role.VILLAGE_DOCTOR, None),
        "nurse": (Role.NURSE, "台山市人民医院"),
        "coordinator": (Role.REFERRAL_COORDINATOR, "台山市人民医院"),
        "quality_officer": (Role.QUALITY_OFFICER, "台山市人民医院"),
        "pharmacy_officer": (Role.PHARMACY_OFFICER, "台山市人民医院"),
        "hr_officer": (Role.HR_OFFICER, "台山市人民医院"),
        "consortium_manager": (Role.CONSORTIUM_MANAGER, "台山市人民医院"),
        "privacy_officer": (Role.PRIVACY_OFFICER, "台山市人民医院"),
        "institution_admin": (Role.INSTITUTION_ADMIN, "水步镇卫生院"),
        "tcm_doctor": (Role.CLINICIAN, "台山市中医院"),
        "tcm_manager": (Role.CONSORTIUM_MANAGER, "台山市中医院"),
    }
    for username, (role, place) in expected.items():
        user = User.objects.get(username=username)
        assert user.check_password(taishan.DEMO_PASSWORD), username
        assert user.full_name
        membership = Membership.objects.current().filter(user=user, role=role).order_by("started_on", "id").first()
        assert membership is not None, username
        assert membership.institution is not None
        if place:
            assert membership.institution.name == place, username
        assert Notification.objects.filter(recipient=user, kind="system", link="/").exists()
    village = Membership.objects.get(user__username="village_doctor")
    assert village.institution is not None and village.institution.kind == InstitutionKind.VILLAGE_CLINIC
    assert village.institution.town == "水步镇"
    lead = User.objects.get(username="lead_doctor")
    assert lead.practitioner.title == "chief_physician"
    assert Membership.objects.get(user=lead).department.name == "心血管内科"  # type: ignore[union-attr]
    township_places = Membership.objects.current().filter(user__username="township_doctor", role=Role.CLINICIAN)
    assert set(township_places.values_list("institution__name", flat=True)) == {"水步镇卫生院", "冲蒌镇卫生院"}
    bureau = Membership.objects.current().get(user__username="bureau_supervisor")
    assert bureau.role == Role.BUREAU_SUPERVISOR and bureau.authority is not None and bureau.authority.division_code == "440781"
    sysadmin = User.objects.get(username="sysadmin")
    assert sysadmin.is_superuser and sysadmin.is_staff and sysadmin.check_password(taishan.DEMO_PASSWORD)
    # Ordinary staff share the one password hash and have practitioner profiles.
    staff = User.objects.exclude(username__in=[p.username for p in taishan.PERSONAS])
    assert staff.count() > 300
    assert staff.values("password").distinct().count() == 1
    assert staff.filter(practitioner__isnull=True).count() == 0
    assert (
        Membership.objects.filter(user__in=staff, role=Role.VILLAGE_DOCTOR).count()
        == Institution.objects.filter(kind=InstitutionKind.VILLAGE_CLINIC).count()
    )


def test_same_seed_gives_the_same_county_and_another_seed_a_different_one():
    build(500, 7)
    first = fingerprint()
    usernames = set(User.objects.values_list("username", flat=True))
    build(500, 7, "--reset")
    assert fingerprint() == first
    assert set(User.objects.values_list("username", flat=True)) == usernames
    build(500, 8, "--reset")
    assert fingerprint() != first
    assert set(User.objects.values_list("username", flat=True)) == usernames  # usernames are fixed, names are not
    assert Patient.objects.count() == 500


def test_rerun_without_reset_refuses_and_changes_nothing():
    build(200)
    before, counts = fingerprint(), row_counts()
    with pytest.raises(CommandError, match="已存在"):
        build(300)
    with pytest.raises(CommandError, match="已存在"):
        build(200, 9)
    assert fingerprint() == before and row_counts() == counts
    output = build(300, 2026, "--skip-existing")
    assert "已存在" in output and taishan.DEMO_PASSWORD in output and "township_doctor" in output
    assert fingerprint() == before and row_counts() == counts


def test_reset_removes_rows_that_point_at_the_county_and_keeps_everything_else():
    build(100)
    counts = row_counts()
    # Data outside the county survives a reset.
    other = HealthAuthority.objects.create(name="开平市卫生健康局", division_code="440783")
    outside = Institution.objects.create(authority=other, name="开平市中心医院", kind=InstitutionKind.GENERAL_HOSPITAL)
    outsider = User.objects.create(username="kaiping_doctor", full_name="关医生")
    Membership.objects.create(user=outsider, institution=outside, role=Role.CLINICIAN)
    outside_patient = Patient.objects.create(name="司徒明", home_institution=outside)
    # Rows in other apps that point at the county (PROTECT foreign keys) must not block it.
    patient = Patient.objects.filter(home_institution__authority__division_code="440781").first()
    assert patient is not None
    doctor = User.objects.get(username="lead_doctor")
    grant = AccessGrant.objects.create(
        patient=patient, grantee_institution=outside, granted_by=doctor, source=GrantSource.REFERRAL,
        expires_at=timezone.now() + dt.timedelta(days=1),
    )  # fmt: skip
    AccessLog.objects.create(
        user=outsider, actor_name="关医生", acting_institution=outside, patient=patient, action=AccessAction.VIEW_SUMMARY,
        basis=AccessBasis.GRANT, grant=grant,
    )  # fmt: skip
    AccessLog.objects.create(
        user=doctor, actor_name="伍志强", patient=outside_patient, action=AccessAction.LIST, basis=AccessBasis.HOLDER
    )

    build(100, 2026, "--reset")
    assert row_counts() == {**counts, "HealthAuthority": 2, "Institution": counts["Institution"] + 1,
                            "User": counts["User"] + 1, "Membership": counts["Membership"] + 1,
                            "Patient": counts["Patient"] + 1}  # fmt: skip
    assert User.objects.filter(username="kaiping_doctor").exists()
    assert Patient.objects.filter(pk=outside_patient.pk).exists()
    # The rebuilt county has grants of its own (its referrals'); the old one's are gone.
    assert not AccessGrant.objects.filter(pk=grant.pk).exists() and not AccessLog.objects.exists()


def test_progress_reports_every_resident():
    seen: list[int] = []
    county = demo_county_build(residents=1234, seed=3, progress=seen.append)
    assert sum(seen) == 1234 == Patient.objects.count()
    assert county.counts["居民"] == 1234
    assert {p.username for p in county.personas} == {p.username for p in taishan.PERSONAS}


def _postgres_only() -> None:
    if connection.vendor != "postgresql":
        pytest.skip("COPY and index handling are PostgreSQL paths")


@pytest.mark.postgres_only
def test_copy_and_bulk_create_load_the_same_residents():
    _postgres_only()
    demo_county_build(residents=700, seed=11, use_copy=True)
    copied = fingerprint()
    demo_county_build(residents=700, seed=11, use_copy=False, replace=True)
    assert fingerprint() == copied


def _patient_table_definition() -> list[tuple[str, str]]:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint WHERE conrelid = 'patients_patient'::regclass "
            "UNION ALL SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'patients_patient' ORDER BY 1, 2"
        )
        return cursor.fetchall()


@pytest.mark.postgres_only
def test_bulk_load_restores_every_index_and_foreign_key(monkeypatch):
    _postgres_only()
    before = _patient_table_definition()
    monkeypatch.setattr(resident_module, "REBUILD_INDEXES_FROM", 100)  # take the bulk path at test size
    demo_county_build(residents=600, seed=5)
    demo_county_build(residents=600, seed=5, replace=True)  # after a reset's pending deferred checks too
    assert _patient_table_definition() == before
    assert Patient.objects.count() == 600
    with connection.cursor() as cursor:  # the foreign keys hold: a dangling grid is refused at the check
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
        with pytest.raises(Exception, match="foreign key"):
            cursor.execute("UPDATE patients_patient SET grid_id = -1 WHERE id = (SELECT min(id) FROM patients_patient)")
