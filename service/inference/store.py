"""The model store: installed bundles, by name and version.

Layout: ``<root>/<name>/<version>/`` holding a verified bundle. The service resolves ``--model
NAME`` to the newest installed version; the API's ``POST /v1/models`` and the federation's
promotion gate install new versions through :meth:`ModelStore.install`, which verifies the
checksums, places the bundle strictly inside the store, loads the network and runs it once on a
patch before the version becomes visible, and never overwrites an installed version.
:meth:`ModelStore.remove` takes a version out again (a rollback: the previous one is then the
newest).
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path

from service.errors import ModelBundleError, ModelConflictError, NotFoundError
from service.inference.bundle import CHECKSUM_FILE, ModelBundle, bundle_files
from service.inference.manifest import check_store_name
from service.inference.pipeline import open_segmenter
from service.inference.session import Device, SessionOptions

logger = logging.getLogger(__name__)


def _version_key(version: str) -> tuple[tuple[int, str], ...]:
    return tuple(
        (int(p), "") if p.isdigit() else (-1, p) for p in version.replace("-", ".").split(".")
    )


def _visible(manifest: Path, root: Path) -> bool:
    # Staging and removal folders start with a dot: never a bundle, even half-written.
    return not any(part.startswith(".") for part in manifest.relative_to(root).parts)


def smoke_test(bundle: ModelBundle) -> None:
    """Load the bundle's network(s) on the CPU and run each once on a zero patch.

    The networks must load from their own bytes and then as the jobs load them, so a file that
    is not ONNX, an operator onnxruntime does not know (custom ops) and weights kept outside the
    ONNX file (external data, which a bundle never carries) fail here instead of in the first
    job.

    Raises
    ------
    ModelBundleError
        If a network does not load, fails to run, or returns the wrong shape or non-finite
        values for the manifest's patch size and labels.
    """
    manifest = bundle.manifest
    name = f"{manifest.name} {manifest.version}"
    try:
        open_segmenter(bundle, SessionOptions(device=Device.CPU, allow_spinning=False)).smoke_test()
    except ModelBundleError as exc:
        raise ModelBundleError(f"{name} cannot be installed: {exc}") from exc


@dataclass(frozen=True)
class ModelStore:
    """Bundles installed under ``roots`` (searched in order; the first is writable)."""

    roots: tuple[Path, ...]

    def bundles(self) -> list[ModelBundle]:
        """Every valid installed bundle; invalid ones are logged and skipped."""
        found = []
        for root in self.roots:
            nested = sorted(root.glob("*/*/manifest.json"))
            for manifest in nested + sorted(root.glob("*/manifest.json")):
                if not _visible(manifest, root):
                    continue
                try:
                    found.append(ModelBundle.load(manifest.parent))
                except ModelBundleError as exc:
                    logger.warning("skipping invalid bundle: %s", exc)
        return found

    def resolve(self, name_or_path: str, *, any_folder: bool = False) -> ModelBundle:
        """A bundle by folder path, or the newest installed version of a model name.

        Parameters
        ----------
        name_or_path
            A model name or task, or a bundle folder.
        any_folder
            Whether a folder outside the stores may be loaded: True for a local user's
            ``fedseg segment --model PATH``; the server keeps False, so that a routing rule
            cannot make it load an arbitrary folder of the server as a bundle.

        Raises
        ------
        ModelBundleError
            If no such bundle exists (the message lists the installed names), or a folder
            outside the stores is named without ``any_folder``.
        """
        path = Path(name_or_path)
        if path.is_dir() and (any_folder or self._inside(path)):
            return ModelBundle.load(path)
        matches = [b for b in self.bundles() if name_or_path in (b.manifest.name, b.manifest.task)]
        if not matches and path.is_dir():
            raise ModelBundleError(
                f"{name_or_path!r} is a folder outside the model stores; the server runs only "
                "installed models: install the bundle (POST /v1/models) and name it"
            )
        if not matches:
            known = sorted({b.manifest.name for b in self.bundles()})
            raise ModelBundleError(
                f"no model {name_or_path!r} in {', '.join(str(r) for r in self.roots)} "
                f"(installed: {', '.join(known) or 'none'})"
            )
        return max(matches, key=lambda b: _version_key(b.manifest.version))

    def _inside(self, path: Path) -> bool:
        """Whether ``path`` (links followed) lies inside one of the store roots."""
        resolved = path.resolve()
        return any(resolved.is_relative_to(root.resolve()) for root in self.roots)

    def for_task(self, task: str) -> ModelBundle | None:
        """The newest installed bundle of a task, or None."""
        matches = [b for b in self.bundles() if b.manifest.task == task]
        return max(matches, key=lambda b: _version_key(b.manifest.version)) if matches else None

    def newest(self, name: str) -> ModelBundle | None:
        """The newest installed version of a model name, or None."""
        matches = [b for b in self.bundles() if b.manifest.name == name]
        return max(matches, key=lambda b: _version_key(b.manifest.version)) if matches else None

    def target(self, name: str, version: str) -> Path:
        """Where ``name`` ``version`` lives in the writable root, checked to stay inside it.

        Raises
        ------
        ModelBundleError
            If the name or version is not a safe folder name, or the folder would resolve
            outside the store (a link inside the store pointing elsewhere).
        """
        try:
            check_store_name("model name", name)
            check_store_name("model version", version)
        except ValueError as exc:
            raise ModelBundleError(str(exc)) from exc
        root = self.roots[0].resolve()
        target = root / name / version
        if not target.resolve().is_relative_to(root):
            raise ModelBundleError(
                f"model {name} {version} would be installed outside the model store (a link "
                "in the store points elsewhere); remove the link"
            )
        return target

    def install(self, source: Path) -> ModelBundle:
        """Verify a bundle folder, run it once, and copy it into the writable root.

        Raises
        ------
        ModelBundleError
            If the bundle does not verify or does not run (see :func:`smoke_test`).
        ModelConflictError
            If that name and version are already installed.
        """
        bundle = ModelBundle.load(source)
        name, version = bundle.manifest.name, bundle.manifest.version
        target = self.target(name, version)
        if target.exists():
            raise ModelConflictError(
                f"{name} {version} is already installed; bump the version to install a new model"
            )
        target.parent.mkdir(parents=True, exist_ok=True)
        # Copy next to the target, verify and run, then rename: a bundle that is half-copied or
        # does not run is never visible to a job.
        staging = Path(tempfile.mkdtemp(prefix=".install-", dir=target.parent))
        try:
            for file in (*bundle_files(bundle.manifest), CHECKSUM_FILE):
                (staging / file).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(bundle.path / file, staging / file)
            smoke_test(ModelBundle.load(staging))
            staging.rename(target)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        logger.info("installed model %s %s", name, version)
        return ModelBundle.load(target)

    def remove(self, name: str, version: str) -> None:
        """Take an installed version out of the writable root (even a damaged one).

        Jobs that already loaded it finish with it; later jobs resolve the newest remaining
        version. Bundles in the read-only roots (shipped with fedseg) cannot be removed.

        Raises
        ------
        NotFoundError
            If that version is not installed.
        ModelConflictError
            If it is one of the read-only bundles.
        """
        target = self.target(name, version)
        if not target.is_dir():
            shipped = {(b.manifest.name, b.manifest.version) for b in self.bundles()}
            if (name, version) in shipped:
                raise ModelConflictError(
                    f"{name} {version} is shipped with fedseg (read-only); it cannot be removed, "
                    "install a newer version instead"
                )
            raise NotFoundError(f"model {name} {version} is not installed")
        # Rename first (atomic: a job sees the whole bundle or none), then delete the files.
        trash = target.parent / f".removed-{uuid.uuid4().hex}"
        target.rename(trash)
        shutil.rmtree(trash, ignore_errors=True)
        logger.info("removed model %s %s", name, version)
