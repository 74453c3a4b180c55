"""A small shared record on top of the persona world.

伍国华 (at_a, held by the lead hospital A) has records from A only: a visit for hypertension, a
fasting glucose two days ago and one forty days ago, a chest X-ray ten days ago. 黄美玲 (at_b,
held by township B) has a visit at B. No identity is made at an institution that does not hold the
patient: once the MPI lands, holding a source identity means holding the record (ADR 0003).
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from yilian.patients.models import SourceIdentity
from yilian.records.models import DiagnosticReport, Observation
from yilian.records.testing import make_chest_xray, make_glucose, make_identity, make_visit
from yilian.testing.matrix import DEFAULT_WATCHED
from yilian.testing.world import World

WATCHED = (*DEFAULT_WATCHED, "records.ServiceRequest", "records.ResultRecognition", "records.Encounter")


@dataclass
class Records:
    identity_a: SourceIdentity
    identity_b: SourceIdentity
    recent_glucose: Observation
    old_glucose: Observation
    xray: DiagnosticReport
    b_glucose: Observation


@pytest.fixture
def records(world: World) -> Records:
    identity_a = make_identity(world.patients["at_a"], world.a, "A-0001")
    make_visit(identity_a, "A-MZ-1", days_ago=3, icd10="I10.x00x002")
    recent = make_glucose(identity_a, "A-LAB-1", days_ago=2).record
    old = make_glucose(identity_a, "A-LAB-0", days_ago=40, value="6.9").record
    xray = make_chest_xray(identity_a, "A-RIS-1", days_ago=10).record
    identity_b = make_identity(world.patients["at_b"], world.b, "B-0001")
    make_visit(identity_b, "B-MZ-1", days_ago=5, icd10="J06.9")
    b_glucose = make_glucose(identity_b, "B-LAB-1", days_ago=1, value="5.2").record
    return Records(identity_a, identity_b, recent, old, xray, b_glucose)
