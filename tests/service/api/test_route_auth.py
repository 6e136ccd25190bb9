"""Every route except the health routes and the static dashboard rejects missing, invalid,
revoked and wrong-role tokens."""

from __future__ import annotations

from typing import Any

from fastapi.routing import APIRoute

from service.api.deps import RequireRole
from service.api.routers.dashboard import STATIC_PATHS
from service.api.routers.health import PUBLIC_PATHS
from service.api.routers.ohif import OHIF_PATHS
from service.auth.tokens import Role, create_token, revoke_token
from tests.service.api.conftest import Api


def _routes(routes: list[Any]) -> list[APIRoute]:
    flat: list[APIRoute] = []
    for route in routes:
        if isinstance(route, APIRoute):
            flat.append(route)
        elif hasattr(route, "original_router"):
            flat.extend(_routes(route.original_router.routes))
    return flat


def _required(route: APIRoute) -> RequireRole | None:
    for dependency in route.dependant.dependencies:
        if isinstance(dependency.call, RequireRole):
            return dependency.call
    return None


def _url(route: APIRoute) -> str:
    path = route.path
    for name in route.param_convertors:
        path = path.replace("{" + name + "}", "1" if name == "rule_id" else "1.2.3")
    return path


def test_every_route_declares_a_role_or_is_public(api: Api) -> None:
    routes = _routes(api.client.app.routes)  # type: ignore[attr-defined]
    assert len(routes) >= 20
    unguarded = {r.path for r in routes if _required(r) is None}
    assert unguarded == PUBLIC_PATHS | STATIC_PATHS | OHIF_PATHS


def test_every_guarded_route_rejects_bad_tokens(api: Api) -> None:
    with api.state.factory() as session, session.begin():
        revoked, row = create_token(session, "old-pacs", Role.ADMIN)
        revoke_token(session, row.id)
    wrong_secret = api.tokens[Role.ADMIN][:-4] + "AAAA"
    checked = 0
    for route in _routes(api.client.app.routes):  # type: ignore[attr-defined]
        needed = _required(route)
        if needed is None:
            continue
        for method in route.methods:
            url = _url(route)

            def call(headers: dict[str, str], method: str = method, url: str = url) -> Any:
                return api.client.request(method, url, headers=headers)

            assert call({}).status_code == 401, f"{method} {url} without a token"
            for bad in ("garbage", revoked, wrong_secret):
                response = call({"Authorization": f"Bearer {bad}"})
                assert response.status_code == 401, f"{method} {url} with {bad[:8]}..."
            for role in Role:
                if role not in needed.roles:
                    response = call(api.headers(role))
                    assert response.status_code == 403, f"{method} {url} as {role}"
            allowed = call(api.headers(Role.ADMIN)).status_code
            assert allowed not in (401, 403), f"{method} {url} refuses an admin"
            checked += 1
    assert checked >= 18


def test_health_routes_need_no_token(api: Api) -> None:
    assert api.client.get("/healthz").json() == {"status": "ok"}
    assert api.client.get("/readyz").json() == {"status": "ready"}


def test_roles_separate_senders_from_readers(api: Api) -> None:
    assert api.client.get("/v1/jobs", headers=api.headers(Role.SENDER)).status_code == 403
    assert api.client.get("/v1/jobs", headers=api.headers(Role.READER)).status_code == 200
    stow = api.client.post("/dicomweb/studies", headers=api.headers(Role.READER))
    assert stow.status_code == 403
