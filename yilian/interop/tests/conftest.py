"""Fixtures for interop: an API key of township B's HIS, HL7 samples with Chinese names."""

from __future__ import annotations

import pytest

from yilian.accounts.models import ApiKey
from yilian.accounts.services import hash_api_key
from yilian.testing.world import World


@pytest.fixture
def b_key(world: World) -> str:
    """The raw API key of 水步镇卫生院's HIS."""
    prefix, raw = ApiKey.generate_raw_key()
    ApiKey.objects.create(institution=world.b, name="HIS", prefix=prefix, key_digest=hash_api_key(raw))
    return raw


def hl7(kind: str, body: str, *, control_id: str = "MSG0001", charset_field: str = "UNICODE UTF-8", security: str = "") -> str:
    event = kind.split("^")[1]
    structure = kind.replace("^", "_")
    msh = (
        f"MSH|^~\\&|HIS|SB|YILIAN|YL|20260105093000|{security}|{kind}^{structure}|{control_id}|P|2.5.1|||||CHN|{charset_field}\r"
    )
    evn = f"EVN|{event}|20260105093000\r" if kind.startswith("ADT") else ""
    return msh + evn + body


PID = (
    "PID|1||P0001^^^SB^PI~440781195803070012^^^CHN^NNCHN~BA01^^^SB^MR||伍^国华||19580307|M|||"
    "石龙村1号^水步镇^台山市^广东省||13800000000\r"
)
PID_2 = "PID|1||P0002^^^SB^PI||黄^美玲||19620512|F\r"
PV1 = "PV1|1|O|全科医学科^^^SB||||D01^黄^晓敏||||||||||||V0001|居民医保||||||||||||||||||||||||20260105093000\r"
SAMPLES = {
    "ADT^A01": PID + PV1.replace("|O|", "|I|"),
    "ADT^A03": PID + PV1.replace("|O|", "|I|").replace("20260105093000\r", "20260105093000|20260110100000\r"),
    "ADT^A04": PID + PV1,
    "ADT^A08": PID + PV1,
    "ADT^A28": PID,
    "ADT^A31": PID,
    "ADT^A40": PID + "MRG|P0009^^^SB^PI\r",
    "ORU^R01": PID
    + PV1
    + "OBR|1|O1|LAB0001|GLU^空腹血糖|||20260105094500|||||||||||||||20260105110000|||F\r"
    + "OBX|1|NM|GLU^空腹血糖^L||6.8|mmol/L|3.9-6.1|H|||F\r"
    + "OBX|2|TX|CONCLUSION^结论||血糖偏高，建议复查||||||F\r",
}
