"""One error→status mapping (issue 20, item 5), no server paths in error details (issue 17,
item 16) and security headers on every answer (issue 17, item 18)."""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

import service.errors as errors_module
from service.api.main import create_app
from service.api.redaction import Redactor
from service.api.security_headers import DEFAULT_POLICY, HeaderPolicy, HeaderRule
from service.auth.tokens import Role
from service.config import Settings
from service.errors import (
    ConflictError,
    DicomGeometryError,
    FedsegError,
    ModelBundleError,
    ModelConflictError,
    NotFoundError,
)
from service.storage.errors import InsufficientStorageError
from tests.service.api.conftest import Api


def _error_app(settings: Settings) -> TestClient:
    """The real app plus one route that raises a given fedseg error."""
    app = create_app(settings)
    raised: dict[str, FedsegError] = {}

    @app.get("/raise/{name}")
    def _raise(name: str) -> None:
        raise raised[name]

    client = TestClient(app)
    client.raised = raised  # type: ignore[attr-defined]
    return client


@pytest.mark.parametrize(
    "error,status",
    [
        (NotFoundError("no job 42"), 404),
        (ConflictError("job 42 is running"), 409),
        (ModelConflictError("threshold-test 1.0 is already installed"), 409),
        # The status comes from the class, never from the words of the message.
        (ModelBundleError("manifest says it is already installed elsewhere"), 422),
        (DicomGeometryError("slices overlap"), 422),
        (InsufficientStorageError("disk full"), 507),
        (FedsegError("something broke"), 500),
    ],
)
def test_every_fedseg_error_answers_the_status_of_its_class(
    settings: Settings, error: FedsegError, status: int
) -> None:
    with _error_app(settings) as client:
        client.raised["e"] = error  # type: ignore[attr-defined]
        response = client.get("/raise/e")
    assert response.status_code == status == type(error).http_status
    assert response.json() == {"detail": str(error)}


def test_every_error_class_declares_an_exit_code_and_a_client_or_server_status() -> None:
    classes = [
        c
        for _, c in inspect.getmembers(errors_module, inspect.isclass)
        if issubclass(c, FedsegError)
    ]
    assert len(classes) >= 9
    for cls in classes:
        assert 400 <= cls.http_status < 600 and cls.exit_code > 0, cls


def test_error_details_show_no_server_paths(settings: Settings) -> None:
    store_file = settings.state_dir / "instances" / "ab" / "cd" / ("ab" * 32 + ".dcm")
    listing = ", ".join(f"PosixPath('{store_file}')" for _ in range(60))
    with _error_app(settings) as client:
        client.raised["e"] = DicomGeometryError(f"[{listing}]: slices overlap")  # type: ignore[attr-defined]
        client.raised["m"] = ModelBundleError(f"no model 'x' in {settings.model_store}")  # type: ignore[attr-defined]
        geometry = client.get("/raise/e").json()["detail"]
        model = client.get("/raise/m").json()["detail"]
    assert str(settings.state_dir) not in geometry and "/instances/" not in geometry
    assert len(geometry) < 1100 and "more characters" in geometry
    assert "ab" * 32 + ".dcm" in geometry  # the file's own name still says which instance
    assert model == "no model 'x' in models"


def test_redactor_keeps_routes_urls_and_units() -> None:
    redactor = Redactor(["/srv/fedseg"])
    text = "POST /v1/jobs queues it; see http://host/dicomweb/studies; SUV in g/mL"
    assert redactor.message(text) == text
    assert redactor.message("/srv/fedseg/results/j/seg.dcm gone") == "seg.dcm gone"
    assert redactor.message("/srv/fedsegother/x") == "/srv/fedsegother/x"
    assert redactor.json({"a": ["/srv/fedseg/m/x.onnx", 3]}) == {"a": ["x.onnx", 3]}


def test_every_answer_carries_security_headers(api: Api) -> None:
    page = api.client.get("/dashboard/")
    script = api.client.get("/dashboard/dashboard.js")
    data = api.client.get("/v1/jobs", headers=api.headers(Role.READER))
    refused = api.client.get("/v1/jobs")
    for response in (page, script, data, refused):
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["x-frame-options"] == "DENY"
        assert "frame-ancestors 'none'" in response.headers["content-security-policy"]
    assert "script-src 'self'" in page.headers["content-security-policy"]
    assert "'unsafe-inline'" not in page.headers["content-security-policy"]
    assert data.headers["content-security-policy"].startswith("default-src 'none'")
    assert "script-src" not in data.headers["content-security-policy"]


def test_header_policy_is_chosen_per_route_prefix(tmp_path: Path, settings: Settings) -> None:
    viewer_csp = "default-src 'self'; worker-src blob:; frame-ancestors 'self'"
    policy = HeaderPolicy(
        rules=(
            *DEFAULT_POLICY.rules,
            HeaderRule(
                "/viewer/", {"Content-Security-Policy": viewer_csp, "X-Frame-Options": "SAMEORIGIN"}
            ),
        )
    )
    app = create_app(settings, headers=policy)

    @app.get("/viewer/index.html")
    def _viewer() -> dict[str, str]:
        return {}

    with TestClient(app) as client:
        viewer = client.get("/viewer/index.html")
        dashboard = client.get("/dashboard/")
    assert viewer.headers["content-security-policy"] == viewer_csp
    assert viewer.headers["x-frame-options"] == "SAMEORIGIN"
    assert viewer.headers["x-content-type-options"] == "nosniff"
    assert "script-src 'self'" in dashboard.headers["content-security-policy"]
    with pytest.raises(ValueError, match="repeat"):
        HeaderPolicy(rules=(HeaderRule("/a/", {}), HeaderRule("/a/", {})))
