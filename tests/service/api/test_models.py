from __future__ import annotations

import io
import tarfile
import zipfile
from pathlib import Path

import numpy as np

from service.auth.tokens import Role
from service.inference.bundle import save_bundle
from tests.service.api.conftest import Api
from tests.service.inference.conftest import pointwise_model, threshold_manifest


def _bundle_zip(tmp_path: Path, version: str = "0.0.1") -> bytes:
    model = pointwise_model(np.array([[-1.0], [1.0]]), np.array([0.45, -0.45]))
    bundle = save_bundle(tmp_path / f"b{version}", model, threshold_manifest(version=version))
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name in ("model.onnx", "manifest.json", "checksums.sha256"):
            archive.write(bundle.path / name, f"bundle/{name}")
    return buffer.getvalue()


def test_admin_installs_a_verified_bundle_once(api: Api, tmp_path: Path) -> None:
    data = _bundle_zip(tmp_path)
    admin = api.headers(Role.ADMIN)
    created = api.client.post("/v1/models", content=data, headers=admin)
    assert created.status_code == 201
    assert created.json()["name"] == "threshold-test" and created.json()["version"] == "0.0.1"
    again = api.client.post("/v1/models", content=data, headers=admin)
    assert again.status_code == 409
    listed = api.client.get("/v1/models", headers=api.headers(Role.READER)).json()
    assert [(m["name"], m["version"]) for m in listed] == [("threshold-test", "0.0.1")]
    assert listed[0]["provenance"]["created"] == "2026-11-22"


def test_tampered_or_unsafe_bundles_are_refused(api: Api, tmp_path: Path) -> None:
    admin = api.headers(Role.ADMIN)
    good = zipfile.ZipFile(io.BytesIO(_bundle_zip(tmp_path)))
    tampered = io.BytesIO()
    with zipfile.ZipFile(tampered, "w") as archive:
        for info in good.infolist():
            content = good.read(info)
            if info.filename.endswith("model.onnx"):
                content = content[:-1] + bytes([content[-1] ^ 1])
            archive.writestr(info.filename, content)
    response = api.client.post("/v1/models", content=tampered.getvalue(), headers=admin)
    assert response.status_code == 422 and "checksum" in response.json()["detail"].lower()

    traversal = io.BytesIO()
    with tarfile.open(fileobj=traversal, mode="w:gz") as archive:
        info = tarfile.TarInfo("../manifest.json")
        info.size = 2
        archive.addfile(info, io.BytesIO(b"{}"))
    response = api.client.post("/v1/models", content=traversal.getvalue(), headers=admin)
    assert response.status_code == 422 and "unsafe" in response.json()["detail"]

    bomb = io.BytesIO()
    with zipfile.ZipFile(bomb, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("model.onnx", b"\0" * (3 * 1024**2))
    api.state.settings.max_bundle_bytes = 1024**2
    response = api.client.post("/v1/models", content=bomb.getvalue(), headers=admin)
    assert len(bomb.getvalue()) < 1024**2
    assert response.status_code == 422 and "more than" in response.json()["detail"]
    assert api.client.get("/v1/models", headers=admin).json() == []


def test_routing_rules_round_trip(api: Api) -> None:
    admin = api.headers(Role.ADMIN)
    rule = {"modality": "PT", "series_description": "fdg|pet", "models": ["pet-lesion"]}
    created = api.client.post("/v1/routing-rules", json=rule, headers=admin)
    assert created.status_code == 201
    bad = api.client.post(
        "/v1/routing-rules", json=rule | {"series_description": "("}, headers=admin
    )
    assert bad.status_code == 422
    listed = api.client.get("/v1/routing-rules", headers=api.headers(Role.READER)).json()
    assert [r["models"] for r in listed] == [["pet-lesion"]]
    rule_id = created.json()["id"]
    assert api.client.delete(f"/v1/routing-rules/{rule_id}", headers=admin).status_code == 204
    assert api.client.get("/v1/routing-rules", headers=admin).json() == []
