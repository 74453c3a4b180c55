"""Pages: the authorisation matrix, CSV import jobs (dry run, row errors, crash safety)."""

from __future__ import annotations

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from yilian.interop import services
from yilian.interop.models import Channel, ImportJob, ImportKind, ImportStatus, InboundMessage, MessageStatus
from yilian.patients.models import SourceIdentity
from yilian.testing.matrix import Endpoint, run_matrix
from yilian.testing.world import World

WATCHED = ("interop.InboundMessage", "interop.ImportJob", "patients.SourceIdentity", "patients.Patient")
MANAGERS = {"consortium_manager": 200}


@pytest.fixture
def dead_letter(world: World) -> InboundMessage:
    message, _created = services.message_store(
        institution=world.b, api_key=None, channel=Channel.HL7_HTTP, raw=b"MSH|^~\\&|broken", kind="ADT^A28", charset="utf-8"
    )
    services.hl7_process(message=message)
    message.refresh_from_db()
    assert message.status == MessageStatus.REJECTED
    return message


@pytest.mark.parametrize(
    "endpoint",
    [
        Endpoint("GET", lambda w: "/interop/messages/"),
        Endpoint("GET", lambda w: "/interop/imports/"),
        Endpoint("GET", lambda w: "/interop/imports/templates/patients.csv"),
    ],
)
def test_list_pages_matrix(world: World, endpoint: Endpoint) -> None:
    run_matrix(world, endpoint, allowed=MANAGERS, denied_status={"anonymous": 302}, watched=WATCHED)


def test_message_pages_matrix(world: World, dead_letter: InboundMessage) -> None:
    uuid = dead_letter.uuid
    run_matrix(
        world,
        Endpoint("GET", lambda w: f"/interop/messages/{uuid}/"),
        allowed=MANAGERS,
        denied_status={"anonymous": 302},
        watched=WATCHED,
    )
    run_matrix(
        world,
        Endpoint("GET", lambda w: f"/interop/messages/{uuid}/raw/"),
        allowed=MANAGERS,
        denied_status={"anonymous": 302},
        watched=WATCHED,
    )
    for action in ("replay", "discard"):
        run_matrix(
            world,
            Endpoint("POST", lambda w, a=action: f"/interop/messages/{uuid}/{a}/"),  # type: ignore[misc]
            allowed={},
            personas=[
                "lead_clinician",
                "township_clinician",
                "village_doctor",
                "bureau_supervisor",
                "other_consortium_user",
                "anonymous",
            ],
            denied_status={"anonymous": 302},
            watched=WATCHED,
        )


def test_other_consortium_manager_cannot_see_the_message(world: World, dead_letter: InboundMessage, login) -> None:  # type: ignore[no-untyped-def]
    assert login("institution_admin").get(f"/interop/messages/{dead_letter.uuid}/").status_code == 200  # admin of B
    dead_letter.institution = world.t
    dead_letter.save()
    assert login("institution_admin").get(f"/interop/messages/{dead_letter.uuid}/").status_code == 404


def test_message_list_queries_do_not_grow(
    world: World, dead_letter: InboundMessage, login, django_assert_max_num_queries
) -> None:  # type: ignore[no-untyped-def]
    client = login("consortium_manager")
    client.get("/interop/messages/")
    for index in range(15):
        services.message_store(institution=world.c, api_key=None, channel=Channel.FHIR, raw=f"x{index}".encode())
    with django_assert_max_num_queries(12):
        response = client.get("/interop/messages/?status=")
    assert response.status_code == 200
    assert response.content.decode().count("/interop/messages/") >= 16


CSV = (
    "患者标识*,姓名*,性别,出生日期,证件号码\n"
    + "".join(f"C{i:04d},患者{i},男,1970-01-01,\n" for i in range(450))
    + "BAD1,坏数据,男,1970-02-30,\n"
)


def test_csv_import_from_the_page_with_dry_run(world: World, login) -> None:  # type: ignore[no-untyped-def]
    client = login("institution_admin")
    upload = SimpleUploadedFile("patients.csv", CSV.encode("gb18030"), content_type="text/csv")
    response = client.post(
        "/interop/imports/", {"institution": world.b.pk, "kind": ImportKind.PATIENTS, "file": upload, "dry_run": "on"}
    )
    assert response.status_code == 302
    job = ImportJob.objects.get()
    assert job.total_rows == 451
    services.import_job_run(job_id=job.pk)
    job.refresh_from_db()
    assert (job.status, job.accepted_rows, job.error_rows) == (ImportStatus.DONE, 450, 1)
    assert job.errors[0]["row"] == 452 and job.errors[0]["field"] == "出生日期"
    assert not SourceIdentity.objects.filter(local_id__startswith="C0").exists()
    assert "出生日期" in client.get(f"/interop/imports/{job.uuid}/").content.decode()


def test_csv_import_stopped_midway_resumes_without_duplicates(world: World, django_user_model) -> None:  # type: ignore[no-untyped-def]
    from yilian.accounts.actors import Actor
    from yilian.accounts.selectors import current_memberships

    user = world.user("institution_admin")
    actor = Actor(user=user, membership=current_memberships(user)[0])
    job = services.import_job_create(
        actor=actor, institution=world.b, kind=ImportKind.PATIENTS, file_name="p.csv", content=CSV.encode()
    )
    before = SourceIdentity.objects.count()
    services.import_job_run(job_id=job.pk, max_chunks=1)  # the worker stops after one chunk
    job.refresh_from_db()
    assert job.status == ImportStatus.RUNNING and job.processed_rows == services.IMPORT_CHUNK
    assert SourceIdentity.objects.count() == before + services.IMPORT_CHUNK
    services.import_job_run(job_id=job.pk)  # a new worker picks it up
    job.refresh_from_db()
    assert (job.status, job.processed_rows, job.accepted_rows, job.error_rows) == (ImportStatus.DONE, 451, 450, 1)
    assert SourceIdentity.objects.count() == before + 450
    dead = InboundMessage.objects.get(channel=Channel.CSV)
    assert dead.status == MessageStatus.REJECTED and dead.import_job == job
    # fixing the refused row from the dead-letter list
    services.message_edit(actor=actor, message=dead, text=dead.text().replace("1970-02-30", "1970-02-28"))
    assert services.message_replay(actor=actor, message=dead).accepted
    assert SourceIdentity.objects.count() == before + 451


def test_interop_strings_have_english() -> None:
    from django.utils import translation

    with translation.override("en"):
        assert (
            translation.gettext("合并患者需要发送机构的身份。") == "Merging patients requires the sending institution's identity."
        )
        assert translation.gettext("已提交导入任务，正在后台处理。") == "The import job was submitted and runs in the background."
