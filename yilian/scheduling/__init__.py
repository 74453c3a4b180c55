"""Unified scheduling across the consortium (号源 / 床位 / 设备统筹): schedules of departments,
practitioners and equipment, slots from templates with holidays and leave, quotas reserved for member
institutions or the green channel, beds and their occupancy, and concurrency-safe bookings."""
