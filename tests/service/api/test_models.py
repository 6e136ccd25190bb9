from __future__ import annotations

import hashlib
import io
import json
import tarfile
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
import pytest
from sqlalchemy import select

from service.auth.tokens import Role
from service.config import Settings
from service.db.models import AuditEvent
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


def _zip(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, content in files.items():
            archive.writestr(name, content)
    return buffer.getvalue()


def _bundle_files(model: bytes, **manifest: object) -> dict[str, bytes]:
    """The three bundle files with checksums that match (so only the content is wrong)."""
    data = threshold_manifest().model_dump(mode="json") | manifest
    files = {"model.onnx": model, "manifest.json": json.dumps(data).encode()}
    sums = "".join(f"{hashlib.sha256(c).hexdigest()}  {n}\n" for n, c in files.items())
    return files | {"checksums.sha256": sums.encode()}


@pytest.mark.parametrize(
    "field,value",
    [
        ("name", "../../escaped"),
        ("name", "/tmp/absolute"),
        ("version", "../../../escaped"),
        ("version", ".."),
        ("name", ".hidden"),
        ("version", "1.0/2"),
    ],
)
def test_bundle_names_cannot_leave_the_model_store(
    api: Api, settings: Settings, tmp_path: Path, field: str, value: str
) -> None:
    model = pointwise_model(np.array([[-1.0], [1.0]]), np.array([0.45, -0.45]))
    settings.model_store.mkdir(parents=True, exist_ok=True)
    before = {p for p in tmp_path.rglob("*") if "state" not in p.parts}
    upload = _zip(_bundle_files(model, **{field: value}))
    response = api.client.post("/v1/models", content=upload, headers=api.headers(Role.ADMIN))
    assert response.status_code == 422, response.text
    assert field in response.json()["detail"] and "model store" in response.json()["detail"]
    after = {p for p in tmp_path.rglob("*") if "state" not in p.parts}
    assert after == before, f"files appeared: {sorted(after - before)}"
    assert api.client.get("/v1/models", headers=api.headers(Role.ADMIN)).json() == []


def _external_weights(location: str) -> Callable[[bytes], bytes]:
    """The network with its weights moved to an external file at ``location``."""

    def damage(model: bytes) -> bytes:
        proto = onnx.load_from_string(model)
        for tensor in proto.graph.initializer:
            tensor.ClearField("raw_data")
            tensor.ClearField("float_data")
            tensor.data_location = onnx.TensorProto.EXTERNAL
            for key, value in (("location", location), ("offset", "0"), ("length", "8")):
                entry = tensor.external_data.add()
                entry.key, entry.value = key, value
        return proto.SerializeToString()

    return damage


def _with_custom_op(model: bytes) -> bytes:
    proto = onnx.load_from_string(model)
    proto.graph.node[0].op_type, proto.graph.node[0].domain = "Frobnicate", "org.example"
    proto.opset_import.append(onnx.helper.make_opsetid("org.example", 1))
    return proto.SerializeToString()


def _three_channels(model: bytes) -> bytes:
    return pointwise_model(np.ones((3, 1)), np.zeros(3))


@pytest.mark.parametrize(
    "damage,expected",
    [
        (lambda model: b"ONNX" + b"\0" * 21, "invalid ONNX"),  # 25 bytes
        (_with_custom_op, "Frobnicate"),
        (_external_weights("weights.bin"), "external data"),
        # A file of the bundle itself as the weights: loadable from the folder, so only the
        # load from the file's own bytes refuses it.
        (_external_weights("checksums.sha256"), "external data"),
        (_three_channels, "shape"),
    ],
    ids=["25-byte", "custom-op", "external-missing", "external-in-bundle", "wrong-outputs"],
)
def test_a_model_that_does_not_run_is_refused_and_never_active(
    api: Api, settings: Settings, damage: Callable[[bytes], bytes], expected: str
) -> None:
    good = pointwise_model(np.array([[-1.0], [1.0]]), np.array([0.45, -0.45]))
    upload = _zip(_bundle_files(damage(good)))
    response = api.client.post("/v1/models", content=upload, headers=api.headers(Role.ADMIN))
    assert response.status_code == 422, response.text
    detail = response.json()["detail"]
    assert "cannot be installed" in detail and expected in detail, detail
    assert str(settings.model_store) not in detail and "/tmp" not in detail
    assert api.client.get("/v1/models", headers=api.headers(Role.READER)).json() == []
    assert not [p for p in settings.model_store.rglob("*") if p.is_file()]


def test_admin_removes_a_version_and_the_previous_one_is_active_again(
    api: Api, settings: Settings, tmp_path: Path
) -> None:
    admin, reader = api.headers(Role.ADMIN), api.headers(Role.READER)
    for version in ("1.0.0", "1.1.0"):
        created = api.client.post(
            "/v1/models", content=_bundle_zip(tmp_path, version), headers=admin
        )
        assert created.status_code == 201
    store = api.state.models
    assert store.resolve("threshold-test").manifest.version == "1.1.0"

    assert api.client.delete("/v1/models/threshold-test/1.1.0", headers=reader).status_code == 403
    removed = api.client.delete("/v1/models/threshold-test/1.1.0", headers=admin)
    assert removed.status_code == 200, removed.text
    assert removed.json()["active"]["version"] == "1.0.0"
    assert store.resolve("threshold-test").manifest.version == "1.0.0"
    assert [m["version"] for m in api.client.get("/v1/models", headers=reader).json()] == ["1.0.0"]
    assert not (settings.model_store / "threshold-test" / "1.1.0").exists()
    assert not list(settings.model_store.glob("threshold-test/.*")), "no trash left behind"

    again = api.client.delete("/v1/models/threshold-test/1.1.0", headers=admin)
    assert again.status_code == 404
    unsafe = api.client.delete("/v1/models/threshold-test/..%2E", headers=admin)
    assert unsafe.status_code in (404, 422)
    last = api.client.delete("/v1/models/threshold-test/1.0.0", headers=admin)
    assert last.status_code == 200 and last.json()["active"] is None
    with api.state.factory() as session:
        actions = session.scalars(
            select(AuditEvent.detail).where(AuditEvent.action == "model remove")
        ).all()
    assert actions == ["threshold-test 1.1.0", "threshold-test 1.0.0"]


def test_shipped_models_cannot_be_removed(api: Api, settings: Settings, tmp_path: Path) -> None:
    model = pointwise_model(np.array([[-1.0], [1.0]]), np.array([0.45, -0.45]))
    save_bundle(settings.shipped_models / "threshold", model, threshold_manifest())
    response = api.client.delete("/v1/models/threshold-test/0.0.1", headers=api.headers(Role.ADMIN))
    assert response.status_code == 409 and "shipped" in response.json()["detail"]
    assert (settings.shipped_models / "threshold" / "model.onnx").is_file()
