"""/api/v1 for interop."""

from ninja import Router

router = Router(tags=["interop"])
