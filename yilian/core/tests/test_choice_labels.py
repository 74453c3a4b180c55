"""get_<field>_display through the per-field label dictionary: right label, right language."""

from django.utils import translation

from yilian.accounts.models import Membership
from yilian.organizations.models import InstitutionKind


def test_display_follows_the_active_language_and_keeps_unknown_values(world) -> None:
    institution = world.b
    assert institution.kind == InstitutionKind.TOWNSHIP_CENTRE
    with translation.override("zh-hans"):
        assert institution.get_kind_display() == "乡镇卫生院"
    with translation.override("en"):
        assert institution.get_kind_display() == str(InstitutionKind.TOWNSHIP_CENTRE.label)
        assert institution.get_kind_display() != "乡镇卫生院"
    institution.kind = "no-such-kind"
    assert institution.get_kind_display() == "no-such-kind"
    membership = Membership.objects.filter(user=world.user("lead_clinician")).first()
    assert membership is not None
    with translation.override("zh-hans"):
        assert membership.get_role_display() == "临床医生"


def test_filter_bar_controls_keep_the_chosen_value(login) -> None:
    client = login("lead_clinician")
    body = client.get("/structure/institutions/", {"kind": InstitutionKind.TOWNSHIP_CENTRE, "q": "水步"}).content.decode()
    assert f'<option value="{InstitutionKind.TOWNSHIP_CENTRE.value}" selected>' in body
    assert 'name="q"' in body and 'value="水步"' in body
    kind_select = body.split('name="kind"', 1)[1].split("</select>", 1)[0]
    assert kind_select.count(" selected>") == 1
    level_select = body.split('name="level"', 1)[1].split("</select>", 1)[0]
    assert level_select.count(" selected>") == 1 and '<option value="" selected>' in level_select
