from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from service.errors import ModelBundleError, NotFoundError
from service.inference.store import ModelStore

from .conftest import threshold_manifest


def test_install_resolve_and_refuse_reinstall(
    make_bundle: Callable[..., Path], tmp_path: Path
) -> None:
    store = ModelStore(roots=(tmp_path / "store",))
    old = make_bundle(threshold_manifest(version="1.2.0"), "old")
    new = make_bundle(threshold_manifest(version="1.10.0"), "new")
    store.install(old)
    store.install(new)
    assert [b.manifest.version for b in store.bundles()] == ["1.10.0", "1.2.0"]
    assert store.resolve("threshold-test").manifest.version == "1.10.0"  # numeric, not text
    assert store.for_task("pet-lesion") is not None and store.for_task("ct-organs") is None
    with pytest.raises(ModelBundleError, match="already installed"):
        store.install(new)
    with pytest.raises(ModelBundleError, match=r"no model 'missing'.*installed: threshold-test"):
        store.resolve("missing")


def test_damaged_bundle_is_not_installed(make_bundle: Callable[..., Path], tmp_path: Path) -> None:
    path = make_bundle()
    (path / "model.onnx").write_bytes(b"garbage")
    store = ModelStore(roots=(tmp_path / "store",))
    with pytest.raises(ModelBundleError, match="checksum does not match"):
        store.install(path)
    assert not list((tmp_path / "store").glob("*/*"))


def test_a_link_in_the_store_cannot_carry_an_install_outside(
    make_bundle: Callable[..., Path], tmp_path: Path
) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    root = tmp_path / "store"
    root.mkdir()
    (root / "threshold-test").symlink_to(outside, target_is_directory=True)
    store = ModelStore(roots=(root,))
    with pytest.raises(ModelBundleError, match="outside the model store"):
        store.install(make_bundle())
    assert not list(outside.iterdir())


def test_staging_and_removed_folders_are_never_bundles(
    make_bundle: Callable[..., Path], tmp_path: Path
) -> None:
    store = ModelStore(roots=(tmp_path / "store",))
    store.install(make_bundle(threshold_manifest(version="1.0.0"), "a"))
    # A copy under a dot-folder (an install being staged, a removal being deleted).
    shutil.copytree(tmp_path / "store/threshold-test/1.0.0", tmp_path / "store/threshold-test/.x")
    shutil.copytree(tmp_path / "store/threshold-test/1.0.0", tmp_path / "store/.removed-y")
    assert [b.path.name for b in store.bundles()] == ["1.0.0"]
    store.remove("threshold-test", "1.0.0")
    assert store.bundles() == [] and store.newest("threshold-test") is None
    with pytest.raises(NotFoundError):
        store.remove("threshold-test", "1.0.0")


def test_folders_outside_the_stores_only_for_a_local_user(
    make_bundle: Callable[..., Path], tmp_path: Path
) -> None:
    store = ModelStore(roots=(tmp_path / "store",))
    outside = make_bundle()
    installed = store.install(outside)
    assert store.resolve(str(installed.path)).path == installed.path  # inside: fine
    with pytest.raises(ModelBundleError, match="outside the model stores"):
        store.resolve(str(outside))
    assert store.resolve(str(outside), any_folder=True).path == outside  # fedseg segment --model
    link = tmp_path / "store" / "link"
    link.symlink_to(outside, target_is_directory=True)
    with pytest.raises(ModelBundleError, match="outside the model stores"):
        store.resolve(str(link))
