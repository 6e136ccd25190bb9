"""The nnU-Net bundle shipped in ``models/nnunet-phantom`` (``make models``) loads and segments.

It was built by ``scripts/build_models.sh nnunet-phantom``: nnU-Net's planner and trainer on 12
tiny phantom CTs, imported with ``fedseg import nnunet``. Here it segments a phantom CT it never
saw (case 13 of the same generator) through ``segment_study`` into SEG, RTSTRUCT and SR that
dciodvfy accepts. Needs no torch: the service runs the bundle.
"""

from __future__ import annotations

import json
from pathlib import Path

from service.config import get_settings
from service.inference.bundle import ModelBundle
from service.inference.session import Device
from service.segment import SegmentOptions, segment_study
from tests.dciodvfy import assert_valid
from training.phantoms import PhantomConfig, PhantomModality, Size, generate_dataset

BUNDLE = Path(__file__).resolve().parents[3] / "models" / "nnunet-phantom"


def test_shipped_bundle_is_an_imported_nnunet_model() -> None:
    manifest = ModelBundle.load(BUNDLE).manifest
    assert manifest.runtime.value == "nnunet-v2" and manifest.intended_use.research_only
    assert manifest.nnunet is not None
    (model,) = manifest.nnunet.models
    assert (model.trainer, model.configuration) == ("nnUNetTrainer", "3d_fullres")
    assert manifest.label_table().names == ["liver", "spleen", "lung_left", "lung_right"]


def test_shipped_bundle_segments_an_unseen_phantom(tmp_path: Path) -> None:
    config = PhantomConfig(
        sites=1,
        cases_per_site=13,
        seed=2026,
        size=Size.TINY,
        modalities=(PhantomModality.CT,),
        partial_labels=False,
        absent_organ_rate=0.0,
    )
    generate_dataset(tmp_path / "dicom", config)
    out = tmp_path / "out"
    options = SegmentOptions(models=(str(BUNDLE),), device=Device.CPU)
    result = segment_study([tmp_path / "dicom/site-01/case-013/ct"], out, options, get_settings())
    assert not result.failed
    names = {s["name"] for s in json.loads((out / "measurements.json").read_text())["segments"]}
    assert {"liver", "lung_left", "lung_right"} <= names
    for name in ("seg.dcm", "rtstruct.dcm", "sr.dcm"):
        assert_valid(out / name)
