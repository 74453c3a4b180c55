"""The REST API root: /api/v1 with OpenAPI docs at /api/v1/docs (served offline, no CDN).

Browsers use their session (CSRF token on unsafe methods); member systems send an institution
API key as `Authorization: Bearer <key>` or `X-API-Key: <key>`. Every error has one shape, see
yilian.core.api.
"""

from yilian.access.api import router as access_router
from yilian.accounts.api import router as accounts_router
from yilian.core.api import YilianAPI
from yilian.interop.api import router as interop_router
from yilian.organizations.api import router as organizations_router
from yilian.patients.api import router as patients_router
from yilian.records.api import router as records_router
from yilian.referrals.api import router as referrals_router
from yilian.scheduling.api import router as scheduling_router

api = YilianAPI(
    title="医联 Yilian API",
    version="1",
    description="医联体/医共体平台接口。标识一律为 UUID；错误统一为 {code, message, message_en, fields}。",
    urls_namespace="api",
)
api.add_router("", accounts_router)
api.add_router("", organizations_router)
api.add_router("", patients_router)
api.add_router("", access_router)
api.add_router("", records_router)
api.add_router("", interop_router)
api.add_router("", scheduling_router)
api.add_router("", referrals_router)
