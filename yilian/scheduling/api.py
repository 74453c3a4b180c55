"""/api/v1 for schedules, slots, bookings and beds."""

from ninja import Router

router = Router(tags=["scheduling"])
