"""Model bundles: list (reader) and upload (admin, checksum-verified)."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from fastapi import APIRouter, HTTPException, Request, status
from fastapi.concurrency import run_in_threadpool

from service.api.bundle_archive import unpack_bundle
from service.api.deps import Admin, Reader, StateDep
from service.api.responses import AUTH, errors
from service.errors import ModelBundleError
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


def _install(state: Any, data: bytes) -> ModelBundle:
    with tempfile.TemporaryDirectory(prefix="fedseg-upload-") as folder:
        unpack_bundle(data, Path(folder), state.settings.max_bundle_bytes)
        bundle: ModelBundle = state.models.install(Path(folder))
        return bundle


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    summary="Install a model (admin)",
    responses=AUTH | errors(409, 413, 422),
)
async def upload_model(request: Request, _: Admin, state: StateDep) -> dict[str, Any]:
    """Install a bundle sent as the body (zip or tar of model.onnx, manifest, checksums)."""
    limit = state.settings.max_bundle_bytes
    data = bytearray()
    async for chunk in request.stream():
        data += chunk
        if len(data) > limit:
            raise HTTPException(status.HTTP_413_CONTENT_TOO_LARGE, f"bundle exceeds {limit} bytes")
    try:
        bundle = await run_in_threadpool(_install, state, bytes(data))
    except ModelBundleError as exc:
        code = status.HTTP_409_CONFLICT if "already installed" in str(exc) else 422
        raise HTTPException(code, str(exc)) from exc
    return describe(bundle)
