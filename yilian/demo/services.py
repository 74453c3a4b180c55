"""Build (and remove) the demo county: 台山市 with its two 医共体, staff, personas and residents.

Everything derives from one seed: names, ID numbers, usernames and every UUID come from seeded
`random.Random` streams, so the same seed gives the same county on any database.
"""

from __future__ import annotations

import random
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

from django.contrib.auth.hashers import make_password
from django.db import connection, models, transaction
from django.db.models import Q

from yilian.accounts.models import Membership, Practitioner, PractitionerTitle, User
from yilian.accounts.roles import Role
from yilian.core.validators import credit_code_check_character
from yilian.demo import taishan
from yilian.demo.residents import GridSlot, ResidentGenerator, full_name, load_residents, phone_number, vocabulary
from yilian.notifications.models import Notification, NotificationKind
from yilian.organizations.models import (
    CentreKind,
    Consortium,
    ConsortiumCentre,
    ConsortiumKind,
    ConsortiumMembership,
    Department,
    GridKind,
    HealthAuthority,
    Institution,
    InstitutionCapability,
    InstitutionKind,
    InstitutionLevel,
    MemberRole,
    ServiceGrid,
)
from yilian.patients.models import Patient


class DemoCountyExists(Exception):
    """The database already holds the demo county (its bureau's division code is taken)."""


@dataclass(frozen=True)
class PersonaLogin:
    username: str
    label: str
    place: str


@dataclass
class DemoCounty:
    """What was built, for the command to report."""

    seed: int
    counts: dict[str, int] = field(default_factory=dict)
    personas: list[PersonaLogin] = field(default_factory=list)
    seconds: float = 0.0
    resident_seconds: float = 0.0


def _new_uuid(rng: random.Random) -> uuid.UUID:
    return uuid.UUID(int=rng.getrandbits(128), version=4)


def demo_county_exists() -> bool:
    return HealthAuthority.objects.filter(division_code=taishan.DIVISION_CODE).exists()


def persona_logins() -> list[PersonaLogin]:
    """username → persona → institution, as printed at the end of the build."""
    logins = []
    for spec in taishan.PERSONAS:
        places = [
            spec.place,
            *(place for username, _role, place, _dept in taishan.SECOND_MEMBERSHIPS if username == spec.username),
        ]
        logins.append(PersonaLogin(spec.username, spec.label, " / ".join(p for p in places if p) or "—"))
    return logins


# --- Removal --------------------------------------------------------------------------------


def _delete_with_dependents(queryset: models.QuerySet, *, chain: tuple[type[models.Model], ...] = ()) -> int:
    """Delete the rows of `queryset` and, first, every row that points at them.

    Django's `QuerySet.delete()` loads each row to honour PROTECT, which takes minutes for a million
    residents. Here every reverse relation (PROTECT, CASCADE, hidden ones like `related_name="+"`
    and many-to-many tables) is followed with set-based DELETEs, deepest first; SET_NULL is applied
    as an UPDATE. Models other apps add later are covered without listing them. Self-references
    (a village clinic's parent) are left to the same statement: the rows share the set.
    """
    model = queryset.model
    for relation in model._meta.get_fields(include_hidden=True):
        if not (relation.auto_created and not relation.concrete and (relation.one_to_many or relation.one_to_one)):
            continue
        related_model = relation.related_model
        if related_model is model or related_model in chain:
            continue
        foreign_key = relation.field  # type: ignore[union-attr]
        dependents = related_model._base_manager.filter(**{f"{foreign_key.name}__in": queryset})  # type: ignore[union-attr]
        if foreign_key.remote_field.on_delete is models.SET_NULL:
            dependents.update(**{foreign_key.name: None})
        else:
            _delete_with_dependents(dependents, chain=(*chain, model))
    return queryset._raw_delete(queryset.db)  # type: ignore[attr-defined]


@transaction.atomic
def demo_county_delete() -> int:
    """Remove the demo county: its bureau and everything under it, and the users who only work there.

    Returns the number of rows removed from the bureau's own table (0 when there was no county).
    """
    authority = HealthAuthority.objects.filter(division_code=taishan.DIVISION_CODE)
    if not authority.exists():
        return 0
    in_county = Q(institution__authority__in=authority) | Q(authority__in=authority)
    county_users = set(Membership.objects.filter(in_county).values_list("user_id", flat=True))
    elsewhere = set(Membership.objects.filter(user_id__in=county_users).exclude(in_county).values_list("user_id", flat=True))
    persona_users = set(User.objects.filter(username__in=[p.username for p in taishan.PERSONAS]).values_list("pk", flat=True))
    user_ids = (county_users - elsewhere) | persona_users
    deleted = _delete_with_dependents(authority)
    _delete_with_dependents(User.objects.filter(pk__in=user_ids))
    return deleted


# --- Structure ------------------------------------------------------------------------------


def _organisation_code(rng: random.Random) -> str:
    """A 9-character organisation code (GB 11714): 8 digits and their check character."""
    body = f"{rng.randrange(10_000_000, 100_000_000)}"
    remainder = 11 - sum(int(c) * w for c, w in zip(body, (3, 7, 9, 10, 5, 8, 4, 2), strict=True)) % 11
    return body + {10: "X", 11: "0"}.get(remainder, str(remainder))


def _credit_code(rng: random.Random, used: set[str]) -> str:
    """A 统一社会信用代码 of a public institution (事业单位: 1 2) registered in Taishan."""
    while True:
        body = f"12{taishan.DIVISION_CODE}{_organisation_code(rng)}"
        code = body + credit_code_check_character(body)
        if code not in used:
            used.add(code)
            return code


@dataclass
class _Structure:
    authority: HealthAuthority
    consortia: dict[str, Consortium]
    institutions: dict[str, Institution]
    departments: dict[tuple[str, str], Department]
    grids: list[tuple[ServiceGrid, Institution]]
    centres_by_name: dict[str, taishan.HealthCentreSpec]


def _build_structure(rng: random.Random) -> _Structure:
    authority = HealthAuthority.objects.create(
        uuid=_new_uuid(rng), name=taishan.AUTHORITY_NAME, division_code=taishan.DIVISION_CODE
    )
    used_codes: set[str] = set()

    def institution(
        name: str,
        short_name: str,
        kind: str,
        level: str,
        town: str,
        address: str,
        *,
        parent: Institution | None = None,
        legal_entity: bool = True,
    ) -> Institution:
        return Institution(
            uuid=_new_uuid(rng),
            authority=authority,
            name=name,
            short_name=short_name,
            kind=kind,
            level=level,
            town=town,
            address=address,
            parent=parent,
            phone=f"0750-{rng.randrange(5_000_000, 5_999_999)}",
            credit_code=_credit_code(rng, used_codes) if legal_entity else None,
        )

    top = [institution(h.name, h.short_name, h.kind, h.level, h.town, h.address) for h in taishan.HOSPITALS]
    top += [
        institution(
            c.name,
            c.name.replace("川岛镇", "").replace("镇", "", 1) if c.kind == InstitutionKind.TOWNSHIP_CENTRE else "台城社区中心",
            c.kind,
            InstitutionLevel.PRIMARY,
            c.town,
            f"{taishan.COUNTY}{c.town}{c.road}",
        )
        for c in taishan.HEALTH_CENTRES
    ]
    institutions = {i.name: i for i in Institution.objects.bulk_create(top)}
    clinics = []
    for centre in taishan.HEALTH_CENTRES:
        if centre.kind != InstitutionKind.TOWNSHIP_CENTRE:
            continue  # 台城's communities are served by the community centre itself
        for village in centre.villages:
            clinics.append(
                institution(
                    f"{centre.town}{village}卫生站",
                    f"{village}卫生站",
                    InstitutionKind.VILLAGE_CLINIC,
                    InstitutionLevel.UNGRADED,
                    centre.town,
                    f"{taishan.COUNTY}{centre.town}{village}",
                    parent=institutions[centre.name],
                    legal_entity=False,
                )
            )
    institutions |= {i.name: i for i in Institution.objects.bulk_create(clinics)}

    capabilities = [(h.name, c) for h in taishan.HOSPITALS for c in h.capabilities]
    for centre in taishan.HEALTH_CENTRES:
        capabilities += [
            (centre.name, c)
            for c in (taishan.CENTRAL_TOWNSHIP_CAPABILITIES if centre.is_central else taishan.TOWNSHIP_CAPABILITIES)
        ]
    InstitutionCapability.objects.bulk_create(
        [InstitutionCapability(institution=institutions[name], capability=c) for name, c in capabilities]
    )

    consortia = {
        spec.key: Consortium.objects.create(
            uuid=_new_uuid(rng),
            authority=authority,
            name=spec.name,
            short_name=spec.short_name,
            kind=ConsortiumKind.COUNTY_COMMUNITY,
            lead_institution=institutions[spec.lead],
            established_on=taishan.ESTABLISHED_ON,
        )
        for spec in taishan.CONSORTIA
    }
    memberships = [(h.consortium, h.name, h.role) for h in taishan.HOSPITALS]
    for centre in taishan.HEALTH_CENTRES:
        memberships.append((centre.consortium, centre.name, MemberRole.MEMBER))
        if centre.kind == InstitutionKind.TOWNSHIP_CENTRE:
            memberships += [(centre.consortium, f"{centre.town}{v}卫生站", MemberRole.MEMBER) for v in centre.villages]
    ConsortiumMembership.objects.bulk_create(
        [
            ConsortiumMembership(
                consortium=consortia[k], institution=institutions[name], role=role, joined_on=taishan.ESTABLISHED_ON
            )
            for k, name, role in memberships
        ]
    )
    ConsortiumCentre.objects.bulk_create(
        [
            ConsortiumCentre(consortium=consortium, kind=kind, host_institution=consortium.lead_institution)
            for consortium in consortia.values()
            for kind in CentreKind.values
        ]
    )

    department_specs: list[tuple[Institution, tuple[tuple[str, str, bool, int], ...]]] = [
        (institutions[h.name], h.departments) for h in taishan.HOSPITALS
    ]
    department_specs += [(institutions[c.name], taishan.TOWNSHIP_DEPARTMENTS) for c in taishan.HEALTH_CENTRES]
    department_specs += [(clinic, taishan.VILLAGE_DEPARTMENTS) for clinic in clinics]
    departments = Department.objects.bulk_create(
        [
            Department(uuid=_new_uuid(rng), institution=inst, code=code, name=name, is_clinical=clinical, beds=beds)
            for inst, specs in department_specs
            for code, name, clinical, beds in specs
        ]
    )

    grids: list[tuple[ServiceGrid, Institution]] = []
    low, high = taishan.GRID_POPULATION
    for centre in taishan.HEALTH_CENTRES:
        for village in centre.villages:
            responsible = (
                institutions[centre.name]
                if centre.grid_kind == GridKind.COMMUNITY
                else institutions[f"{centre.town}{village}卫生站"]
            )
            grid = ServiceGrid(
                uuid=_new_uuid(rng),
                consortium=consortia[centre.consortium],
                responsible_institution=responsible,
                name=village,
                kind=centre.grid_kind,
                town=centre.town,
                population=rng.randint(low, high),
            )
            grids.append((grid, responsible))
    ServiceGrid.objects.bulk_create([g for g, _ in grids])
    return _Structure(
        authority=authority,
        consortia=consortia,
        institutions=institutions,
        departments={(d.institution.name, d.name): d for d in departments},
        grids=grids,
        centres_by_name={c.name: c for c in taishan.HEALTH_CENTRES},
    )


# --- People ---------------------------------------------------------------------------------

_DOCTOR_TITLES = (
    (
        PractitionerTitle.CHIEF_PHYSICIAN,
        PractitionerTitle.ASSOCIATE_CHIEF_PHYSICIAN,
        PractitionerTitle.ATTENDING_PHYSICIAN,
        PractitionerTitle.RESIDENT_PHYSICIAN,
    ),
    (1, 2, 4, 3),
)
_TOWNSHIP_DOCTOR_TITLES = (
    (
        PractitionerTitle.ATTENDING_PHYSICIAN,
        PractitionerTitle.PHYSICIAN,
        PractitionerTitle.RESIDENT_PHYSICIAN,
        PractitionerTitle.ASSISTANT_PHYSICIAN,
    ),
    (3, 3, 2, 2),
)
_NURSE_TITLES = (
    (
        PractitionerTitle.ASSOCIATE_CHIEF_NURSE,
        PractitionerTitle.SUPERVISING_NURSE,
        PractitionerTitle.NURSE_PRACTITIONER,
        PractitionerTitle.NURSE,
    ),
    (1, 3, 4, 3),
)


@dataclass
class _Person:
    username: str
    full_name: str
    role: str
    institution: Institution | None
    department: Department | None
    title: str
    specialty: str = ""


def _staff(rng: random.Random, structure: _Structure) -> list[_Person]:
    """Ordinary staff: doctors by department and nurses at each hospital and centre, a village doctor per clinic."""
    vocab = vocabulary()
    people: list[_Person] = []

    def person(
        username: str,
        role: str,
        institution: Institution,
        department: Department | None,
        titles: tuple[tuple[str, ...], tuple[int, ...]],
    ) -> None:
        male = rng.random() < (0.2 if role == Role.NURSE else 0.6)
        people.append(
            _Person(
                username,
                full_name(rng, vocab, male),
                role,
                institution,
                department,
                rng.choices(*titles)[0],
                department.name if department and department.is_clinical else "",
            )
        )

    for hospital in taishan.HOSPITALS:
        inst = structure.institutions[hospital.name]
        clinical = [
            structure.departments[(hospital.name, name)]
            for _code, name, is_clinical, beds in hospital.departments
            if is_clinical and beds
        ]
        n = 0
        for department in clinical:
            for _ in range(hospital.doctors_per_department):
                n += 1
                person(f"{hospital.slug}_doctor{n:02d}", Role.CLINICIAN, inst, department, _DOCTOR_TITLES)
        for k in range(hospital.nurses):
            person(f"{hospital.slug}_nurse{k + 1:02d}", Role.NURSE, inst, clinical[k % len(clinical)], _NURSE_TITLES)
    for centre in taishan.HEALTH_CENTRES:
        inst = structure.institutions[centre.name]
        wards = [structure.departments[(centre.name, name)] for name in ("全科医学科", "内科", "中医科", "妇产科")]
        for k in range(taishan.TOWNSHIP_DOCTORS):
            person(f"{centre.slug}_doctor{k + 1:02d}", Role.CLINICIAN, inst, wards[k % len(wards)], _TOWNSHIP_DOCTOR_TITLES)
        for k in range(taishan.TOWNSHIP_NURSES):
            person(f"{centre.slug}_nurse{k + 1:02d}", Role.NURSE, inst, wards[k % len(wards)], _NURSE_TITLES)
        if centre.kind == InstitutionKind.TOWNSHIP_CENTRE:
            for k, village in enumerate(centre.villages):
                clinic_name = f"{centre.town}{village}卫生站"
                person(
                    f"{centre.slug}_village{k + 1:02d}",
                    Role.VILLAGE_DOCTOR,
                    structure.institutions[clinic_name],
                    structure.departments[(clinic_name, "诊室")],
                    ((PractitionerTitle.VILLAGE_DOCTOR,), (1,)),
                )
    return people


def _personas(structure: _Structure) -> list[_Person]:
    people = []
    for spec in taishan.PERSONAS:
        inst = structure.institutions.get(spec.place)
        department = structure.departments.get((spec.place, spec.department)) if spec.department else None
        people.append(
            _Person(
                spec.username,
                spec.full_name,
                spec.role,
                inst,
                department,
                spec.title,
                department.name if department and department.is_clinical and spec.title else "",
            )
        )
    return people


# The first digit of a certificate number: 1 physician, 2 nurse, 3 village doctor, 4 pharmacist or technician.
_NURSE_TITLES_SET = {*_NURSE_TITLES[0], PractitionerTitle.CHIEF_NURSE}
_CERTIFICATE_CATEGORY: dict[str, str] = {
    PractitionerTitle.VILLAGE_DOCTOR: "3",
    PractitionerTitle.PHARMACIST: "4",
    PractitionerTitle.TECHNICIAN: "4",
    **dict.fromkeys(_NURSE_TITLES_SET, "2"),
}


def _build_people(rng: random.Random, structure: _Structure) -> dict[str, User]:
    """Personas and staff: one password hash for all, a practitioner profile for clinical staff."""
    password = make_password(taishan.DEMO_PASSWORD)  # hashed once: Argon2 per user would take minutes
    vocab = vocabulary()
    personas = _personas(structure)
    people = personas + _staff(rng, structure)
    superusers = {p.username for p in taishan.PERSONAS if p.superuser}
    users = User.objects.bulk_create(
        [
            User(
                uuid=_new_uuid(rng),
                username=p.username,
                full_name=p.full_name,
                password=password,
                phone=phone_number(rng, vocab),
                is_superuser=p.username in superusers,
                is_staff=p.username in superusers,
            )
            for p in people
        ]
    )
    by_username = {u.username: u for u in users}
    Practitioner.objects.bulk_create(
        [
            Practitioner(
                user=by_username[p.username],
                title=p.title,
                specialty=p.specialty,
                certificate_number=f"{_CERTIFICATE_CATEGORY.get(p.title, '1')}10{taishan.DIVISION_CODE}{n:06d}",
            )
            for n, p in enumerate((p for p in people if p.title), start=1)
        ]
    )
    memberships = [
        Membership(
            uuid=_new_uuid(rng),
            user=by_username[p.username],
            institution=p.institution,
            department=p.department,
            role=p.role,
            started_on=taishan.ESTABLISHED_ON,
        )
        for p in people
        if p.institution is not None
    ]
    memberships.append(
        Membership(
            uuid=_new_uuid(rng),
            user=by_username["bureau_supervisor"],
            authority=structure.authority,
            role=Role.BUREAU_SUPERVISOR,
            started_on=taishan.ESTABLISHED_ON,
        )
    )
    for username, role, place, department in taishan.SECOND_MEMBERSHIPS:
        memberships.append(
            Membership(
                uuid=_new_uuid(rng),
                user=by_username[username],
                institution=structure.institutions[place],
                department=structure.departments[(place, department)],
                role=role,
                started_on=taishan.ESTABLISHED_ON,
            )
        )
    Membership.objects.bulk_create(memberships)

    notifications = []
    for spec in taishan.PERSONAS:
        for key in ("*", spec.username):
            if key in taishan.PERSONA_NOTIFICATIONS:
                title, body = taishan.PERSONA_NOTIFICATIONS[key]
                notifications.append(
                    Notification(
                        recipient=by_username[spec.username], kind=NotificationKind.SYSTEM, title=title, body=body, link="/"
                    )
                )
    Notification.objects.bulk_create(notifications)
    return by_username


# --- The whole county -----------------------------------------------------------------------


def demo_county_build(
    *,
    residents: int = taishan.DEFAULT_RESIDENTS,
    seed: int = taishan.DEFAULT_SEED,
    replace: bool = False,
    use_copy: bool | None = None,
    progress: Callable[[int], None] | None = None,
) -> DemoCounty:
    """Build the demo county in one transaction; with `replace`, remove an existing one first.

    Raises DemoCountyExists when the county is there and `replace` is false (nothing is changed).
    `use_copy` forces the resident loader (None: COPY on PostgreSQL, bulk_create elsewhere).
    """
    if residents < 0:
        raise ValueError("residents must not be negative")
    started = time.perf_counter()
    result = DemoCounty(seed=seed)
    with transaction.atomic():
        if demo_county_exists():
            if not replace:
                raise DemoCountyExists(taishan.AUTHORITY_NAME)
            demo_county_delete()
        structure = _build_structure(random.Random(f"yilian-demo:{seed}:structure"))
        users = _build_people(random.Random(f"yilian-demo:{seed}:people"), structure)
        slots = [
            GridSlot(
                grid_id=grid.pk,
                institution_id=responsible.pk,
                town=grid.town,
                place=f"{taishan.COUNTY}{grid.town}{grid.name}",
                population=grid.population,
                streets=taishan.TAICHENG_STREETS if grid.kind == GridKind.COMMUNITY else (),
            )
            for grid, responsible in structure.grids
        ]
        resident_started = time.perf_counter()
        generator = ResidentGenerator(random.Random(f"yilian-demo:{seed}:residents"), slots)
        load_residents(generator, residents, use_copy=use_copy, progress=progress)
        result.resident_seconds = time.perf_counter() - resident_started
    if connection.vendor == "postgresql" and residents >= 100_000:
        # Fresh statistics, and (outside a transaction) a visibility map so counts can use index-only
        # scans: right after COPY a township's patient count was a 190 ms parallel scan, 7 ms after.
        table = connection.ops.quote_name(Patient._meta.db_table)
        with connection.cursor() as cursor:
            cursor.execute(f"ANALYZE {table}" if connection.in_atomic_block else f"VACUUM (ANALYZE) {table}")
    authority = structure.authority
    result.counts = {
        "机构": Institution.objects.filter(authority=authority).count(),
        "医联体": Consortium.objects.filter(authority=authority).count(),
        "科室": Department.objects.filter(institution__authority=authority).count(),
        "网格": ServiceGrid.objects.filter(consortium__authority=authority).count(),
        "用户": len(users),
        "居民": residents,
    }
    result.personas = persona_logins()
    result.seconds = time.perf_counter() - started
    return result
