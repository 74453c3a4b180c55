"""URL map. Pages per app; the REST API under /api/v1; Django admin for system admins."""

from django.contrib import admin
from django.urls import include, path

from yilian.api import api

urlpatterns = [
    # The machine clients' addresses first: they take the most requests (resolving walks this list).
    path("api/v1/", api.urls),
    path("fhir/", include("yilian.interop.fhir.urls")),
    path("", include("yilian.web.urls")),
    path("accounts/", include("yilian.accounts.urls")),
    path("structure/", include("yilian.organizations.urls")),
    path("patients/", include("yilian.patients.urls")),
    path("records/", include("yilian.records.urls")),
    path("interop/", include("yilian.interop.urls")),
    path("me/", include("yilian.portal.urls")),
    path("scheduling/", include("yilian.scheduling.urls")),
    path("referrals/", include("yilian.referrals.urls")),
    path("access/", include("yilian.access.urls")),
    path("inbox/", include("yilian.notifications.urls")),
    path("i18n/", include("django.conf.urls.i18n")),
    path("admin/", admin.site.urls),
]
