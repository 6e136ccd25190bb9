"""The model store: installed bundles, by name and version.

Layout: ``<root>/<name>/<version>/`` holding a verified bundle. The service resolves ``--model
NAME`` to the newest installed version; the API's ``POST /v1/models`` and the federation's
promotion gate install new versions through :meth:`ModelStore.install`, which verifies the
checksums first and never overwrites an installed version.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from service.errors import ModelBundleError
from service.inference.bundle import ModelBundle

logger = logging.getLogger(__name__)


def _version_key(version: str) -> tuple[tuple[int, str], ...]:
    return tuple(
        (int(p), "") if p.isdigit() else (-1, p) for p in version.replace("-", ".").split(".")
    )


@dataclass(frozen=True)
class ModelStore:
    """Bundles installed under ``roots`` (searched in order; the first is writable)."""

    roots: tuple[Path, ...]

    def bundles(self) -> list[ModelBundle]:
        """Every valid installed bundle; invalid ones are logged and skipped."""
        found = []
        for root in self.roots:
            for manifest in sorted(root.glob("*/*/manifest.json")) + sorted(
                root.glob("*/manifest.json")
            ):
                try:
                    found.append(ModelBundle.load(manifest.parent))
                except ModelBundleError as exc:
                    logger.warning("skipping invalid bundle: %s", exc)
        return found

    def resolve(self, name_or_path: str) -> ModelBundle:
        """A bundle by folder path, or the newest installed version of a model name.

        Raises
        ------
        ModelBundleError
            If no such bundle exists; the message lists the installed names.
        """
        path = Path(name_or_path)
        if path.is_dir():
            return ModelBundle.load(path)
        matches = [b for b in self.bundles() if name_or_path in (b.manifest.name, b.manifest.task)]
        if not matches:
            known = sorted({b.manifest.name for b in self.bundles()})
            raise ModelBundleError(
                f"no model {name_or_path!r} in {', '.join(str(r) for r in self.roots)} "
                f"(installed: {', '.join(known) or 'none'})"
            )
        return max(matches, key=lambda b: _version_key(b.manifest.version))

    def for_task(self, task: str) -> ModelBundle | None:
        """The newest installed bundle of a task, or None."""
        matches = [b for b in self.bundles() if b.manifest.task == task]
        return max(matches, key=lambda b: _version_key(b.manifest.version)) if matches else None

    def install(self, source: Path) -> ModelBundle:
        """Verify a bundle folder and copy it into the writable root.

        Raises
        ------
        ModelBundleError
            If the bundle does not verify, or that name and version are already installed.
        """
        bundle = ModelBundle.load(source)
        target = self.roots[0] / bundle.manifest.name / bundle.manifest.version
        if target.exists():
            raise ModelBundleError(
                f"{bundle.manifest.name} {bundle.manifest.version} is already installed at "
                f"{target}; bump the version to install a new model"
            )
        target.parent.mkdir(parents=True, exist_ok=True)
        # Copy next to the target, verify, then rename: a half-copied bundle is never visible.
        staging = Path(tempfile.mkdtemp(prefix=".install-", dir=target.parent))
        try:
            for name in ("model.onnx", "manifest.json", "checksums.sha256"):
                shutil.copy2(bundle.path / name, staging / name)
            ModelBundle.load(staging)
            staging.rename(target)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        logger.info("installed model %s %s", bundle.manifest.name, bundle.manifest.version)
        return ModelBundle.load(target)
