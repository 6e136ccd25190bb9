"""Model bundles: list (reader), upload and remove (admin).

An upload is unpacked safely, checksum-verified, placed strictly inside the model store and run
once on a patch before it becomes active (:meth:`ModelStore.install`); removing a version rolls
the model back to the newest version left.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from fastapi import APIRouter, HTTPException, Request, status
from fastapi.concurrency import run_in_threadpool

from service.api.bundle_archive import unpack_bundle
from service.api.deps import Admin, Reader, StateDep, audit_access
from service.api.responses import AUTH, errors
from service.api.state import ServerState
from service.inference.bundle import ModelBundle

router = APIRouter(prefix="/v1/models", tags=["models"])


def describe(bundle: ModelBundle) -> dict[str, Any]:
    """What the model list shows of a bundle: identity, task, labels and provenance."""
    manifest = bundle.manifest
    return {
        "name": manifest.name,
        "version": manifest.version,
        "task": manifest.task,
        "modality": manifest.modality,
        "description": manifest.description,
        "intended_use": manifest.intended_use,
        "labels": [entry.get("name") for entry in manifest.labels],
        "provenance": manifest.provenance.model_dump(mode="json"),
    }


@router.get("", summary="Installed models", responses=AUTH)
def list_models(_: Reader, state: StateDep) -> list[dict[str, Any]]:
    """Every installed bundle with its version and provenance."""
    return [describe(b) for b in state.models.bundles()]


def _install(state: ServerState, data: bytes) -> ModelBundle:
    with tempfile.TemporaryDirectory(prefix="fedseg-upload-") as folder:
        unpack_bundle(data, Path(folder), state.settings.max_bundle_bytes)
        return state.models.install(Path(folder))


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    summary="Install a model (admin)",
    responses=AUTH | errors(409, 413, 422),
)
async def upload_model(request: Request, principal: Admin, state: StateDep) -> dict[str, Any]:
    """Install a bundle sent as the body (zip or tar of model.onnx, manifest, checksums).

    422 when it is unsafe, does not verify, or does not load and run on one patch; 409 when
    that name and version are already installed.
    """
    limit = state.settings.max_bundle_bytes
    data = bytearray()
    async for chunk in request.stream():
        data += chunk
        if len(data) > limit:
            raise HTTPException(status.HTTP_413_CONTENT_TOO_LARGE, f"bundle exceeds {limit} bytes")
    bundle = await run_in_threadpool(_install, state, bytes(data))
    name, version = bundle.manifest.name, bundle.manifest.version
    audit_access(state, principal, "model install", None, f"{name} {version}")
    return describe(bundle)


@router.delete(
    "/{name}/{version}",
    summary="Remove a model version (admin); roll back to the previous one",
    responses=AUTH | errors(404, 409, 422),
)
def remove_model(name: str, version: str, principal: Admin, state: StateDep) -> dict[str, Any]:
    """Remove an installed version; jobs from now on use the newest version left, if any.

    404 when that version is not installed, 409 for the read-only bundles shipped with fedseg.
    """
    state.models.remove(name, version)
    audit_access(state, principal, "model remove", None, f"{name} {version}")
    active = state.models.newest(name)
    return {
        "removed": {"name": name, "version": version},
        "active": describe(active) if active is not None else None,
    }
