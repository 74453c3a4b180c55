"""/api/v1 for records."""

from ninja import Router

router = Router(tags=["records"])
