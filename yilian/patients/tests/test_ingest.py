"""identity_ingest (ADR 0003): deterministic on a valid national ID, probabilistic otherwise,
idempotent, Chinese validation messages; and the gatekeeper for institutions holding identities."""

from __future__ import annotations

import datetime as dt

import pytest
from django.core.exceptions import ValidationError

from yilian.patients.identities import IdentityData
from yilian.patients.models import IdentityLinkEvent, LinkMethod, MatchReview, Patient, SourceIdentity
from yilian.patients.services import identity_ingest

BORN = dt.date(1958, 3, 7)


def test_valid_national_id_links_deterministically_to_the_known_patient(world) -> None:
    outcome = identity_ingest(
        institution=world.t,
        data=IdentityData(local_id="T-1", name="伍國華", sex="1", birth_date=BORN, id_number="440781195803070012"),
    )
    assert outcome.created and not outcome.needs_review
    assert outcome.method == LinkMethod.NATIONAL_ID
    assert outcome.patient == world.patients["at_a"]
    assert outcome.identity.patient == world.patients["at_a"]
    assert IdentityLinkEvent.objects.filter(identity=outcome.identity, to_patient=world.patients["at_a"]).count() == 1


def test_same_data_twice_changes_nothing(world) -> None:
    data = IdentityData(local_id="T-2", name="甄美", sex="2", birth_date=dt.date(1990, 1, 2), phone="13911112222", town="大江镇")
    first = identity_ingest(institution=world.t, data=data)
    counts = (Patient.objects.count(), SourceIdentity.objects.count(), IdentityLinkEvent.objects.count())
    updated_at = first.identity.updated_at
    second = identity_ingest(institution=world.t, data=data)
    assert first.created and first.method == LinkMethod.NEW
    assert not second.created and second.identity.pk == first.identity.pk and second.patient == first.patient
    assert (Patient.objects.count(), SourceIdentity.objects.count(), IdentityLinkEvent.objects.count()) == counts
    second.identity.refresh_from_db()
    assert second.identity.updated_at == updated_at


def test_unknown_person_gets_a_new_golden_patient_at_the_sending_institution(world) -> None:
    outcome = identity_ingest(
        institution=world.d, data=IdentityData(local_id="D-9", name="司徒雷", sex="1", id_number="440781200001010011")
    )
    assert outcome.created and outcome.method == LinkMethod.NEW
    assert outcome.patient.home_institution == world.d
    assert outcome.patient.name == "司徒雷" and outcome.patient.id_number_valid


def test_failing_check_digit_never_links_deterministically(world) -> None:
    # The world's 伍国华 with the last digit mistyped; other fields differ so the probabilistic
    # matcher has nothing strong either.
    outcome = identity_ingest(
        institution=world.t, data=IdentityData(local_id="T-3", name="李四", sex="2", id_number="440781195803070013")
    )
    assert outcome.method == LinkMethod.NEW
    assert not outcome.identity.id_number_valid
    assert outcome.patient != world.patients["at_a"]


def test_probabilistic_link_with_homophone_name_and_no_id(world) -> None:
    # 黄美玲 at B, sent by T as 黄美龄 (homophone) with the same birth date, phone and town.
    outcome = identity_ingest(
        institution=world.t,
        data=IdentityData(local_id="T-4", name="黄美龄", sex="2", birth_date=BORN, phone="138 0000 0000", town="水步镇"),
    )
    assert outcome.method == LinkMethod.PROBABILISTIC
    assert outcome.patient == world.patients["at_b"]
    assert outcome.identity.link_score is not None and outcome.identity.link_score > 8


def test_between_thresholds_creates_patient_and_opens_review(world) -> None:
    # Same name and birth date as 甄伟, nothing else: possible, not certain.
    outcome = identity_ingest(institution=world.d, data=IdentityData(local_id="D-5", name="甄伟", birth_date=BORN, town="大江镇"))
    assert outcome.method == LinkMethod.NEW and outcome.needs_review
    review = MatchReview.objects.get(identity=outcome.identity)
    assert review.candidate == world.patients["at_t"]
    assert review.comparison["name"] == 3 and review.comparison["birth_date"] == 2


def test_changed_demographics_update_in_place_and_keep_link(world) -> None:
    first = identity_ingest(institution=world.c, data=IdentityData(local_id="C-1", name="谭明", sex="1", phone="13600001111"))
    second = identity_ingest(institution=world.c, data=IdentityData(local_id="C-1", name="谭明", sex="1", phone="13600002222"))
    assert not second.created and second.patient == first.patient
    assert SourceIdentity.objects.get(pk=first.identity.pk).phone == "13600002222"


@pytest.mark.parametrize(
    ("data", "field", "message"),
    [
        (IdentityData(local_id="", name="张三"), "local_id", "缺少机构内患者标识。"),
        (IdentityData(local_id="X", name=" "), "name", "缺少姓名。"),
        (IdentityData(local_id="X", name="张三", sex="M"), "sex", "性别代码无效"),
        (IdentityData(local_id="X", name="张三", id_type="42"), "id_type", "证件类型代码无效"),
        (IdentityData(local_id="X", name="张" * 51), "name", "最多 50 个字符"),
        (IdentityData(local_id="X", name="张三", birth_date=dt.date(2999, 1, 1)), "birth_date", "出生日期不合理。"),
        (IdentityData(local_id="X", name="张三", phone="call me"), "phone", "联系电话只能包含"),
        (IdentityData(local_id="X\x00", name="张三"), "local_id", "不能包含空字符。"),
    ],
)
def test_refused_input_raises_chinese_validation_error(world, data, field, message) -> None:
    before = SourceIdentity.objects.count()
    with pytest.raises(ValidationError) as caught:
        identity_ingest(institution=world.c, data=data)
    assert any(message in m for m in caught.value.message_dict[field])
    assert SourceIdentity.objects.count() == before


def test_institution_holding_an_identity_sees_the_patient(world, login) -> None:
    patient = world.patients["at_a"]
    other = login("other_consortium_user")  # a clinician at T
    assert other.get(f"/patients/{patient.uuid}/").status_code == 404
    identity_ingest(
        institution=world.t, data=IdentityData(local_id="T-7", name="伍国华", birth_date=BORN, id_number="440781195803070012")
    )
    assert other.get(f"/patients/{patient.uuid}/").status_code == 200
    assert "伍国华" in other.get("/patients/").content.decode()
    # Still nobody else's: D holds nothing of the patient.
    assert Patient.objects.filter(pk=patient.pk, identities__institution=world.d).count() == 0
