"""A member HIS talking FHIR to Yilian in tests: its institution key, writes and reads."""

from __future__ import annotations

import json
from typing import Any

from django.test import Client

from yilian.accounts.models import ApiKey, hash_api_key
from yilian.testing.world import World


def his_key(world: World, institution: str) -> str:
    """A new API key of `world.<institution>` (the raw key, as the HIS would hold it)."""
    prefix, raw = ApiKey.generate_raw_key()
    ApiKey.objects.create(institution=getattr(world, institution), name="HIS", prefix=prefix, key_digest=hash_api_key(raw))
    return raw


def fhir_send(client: Client, key: str, method: str, url: str, body: Any) -> Any:
    return getattr(client, method)(
        url,
        data=json.dumps(body, ensure_ascii=False).encode(),
        content_type="application/fhir+json",
        headers={"Authorization": f"Bearer {key}"},
    )


def fhir_get(client: Client, key: str, url: str, params: dict[str, str] | None = None) -> Any:
    return client.get(url, params or {}, headers={"Authorization": f"Bearer {key}"})


def fhir_outcome(response: Any, status: int, where: str | None = None) -> dict[str, Any]:
    """The OperationOutcome of a refused request: its status, a diagnostic, and (when given) the
    expression it names."""
    assert response.status_code == status, response.content
    body = response.json()
    assert body["resourceType"] == "OperationOutcome" and body["issue"][0]["diagnostics"]
    if where is not None:
        assert body["issue"][0]["expression"] == [where], body
    return body  # type: ignore[no-any-return]
