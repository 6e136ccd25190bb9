"""Write a multi-site phantom dataset as real DICOM with NIfTI ground truth.

Layout::

    OUT/dataset.json
    OUT/site-01/case-001/{ct,pt,mr}/IM0001.dcm ...
    OUT/site-01/case-001/labels/{ct-organs,body,pet-lesion,pet-lesion-instances,mr-tumour}.nii.gz
    OUT/site-01/case-001/truth.json

``ct-organs.nii.gz`` holds only the organs its site annotates (partial labels); organs that are
absent from a case are absent from its image too. ``dataset.json`` says which is which, so a
trainer can tell "not annotated" from "background".
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from service.dicom.image_writer import SeriesSpec, write_series
from service.nifti import write_nifti
from training.phantoms.cases import PhantomCase, make_case
from training.phantoms.config import CT_ORGANS, MR_TUMOUR, ORGAN_VALUES, PET_LESION, PhantomConfig
from training.phantoms.pet import analytic_truth, lesion_truth

INDEX_NAME = "dataset.json"
TRUTH_NAME = "truth.json"


@dataclass(frozen=True)
class CaseEntry:
    """Where one case's series and labels are, relative to the dataset folder."""

    case_id: str
    path: str
    absent_organs: tuple[str, ...]
    series: dict[str, str]
    labels: dict[str, str]
    mr_tumour_class: str | None


@dataclass(frozen=True)
class SiteEntry:
    """One site: its acquisition profile, annotated organs and cases."""

    site_id: str
    annotated_organs: tuple[str, ...]
    profile: dict[str, object]
    cases: tuple[CaseEntry, ...]


@dataclass(frozen=True)
class DatasetIndex:
    """Contents of ``dataset.json``."""

    seed: int
    size: str
    modalities: tuple[str, ...]
    partial_labels: bool
    labels: dict[str, dict[str, str]]
    sites: tuple[SiteEntry, ...] = field(default_factory=tuple)

    def to_json(self) -> dict[str, object]:
        """Plain data, as written to ``dataset.json``."""
        return {"name": "fedseg-phantoms", **asdict(self)}

    @classmethod
    def load(cls, path: Path) -> DatasetIndex:
        """Read ``dataset.json`` (or the folder holding it)."""
        path = Path(path)
        data = json.loads((path / INDEX_NAME if path.is_dir() else path).read_text())
        sites = tuple(
            SiteEntry(
                site_id=s["site_id"],
                annotated_organs=tuple(s["annotated_organs"]),
                profile=s["profile"],
                cases=tuple(
                    CaseEntry(**{**c, "absent_organs": tuple(c["absent_organs"])})
                    for c in s["cases"]
                ),
            )
            for s in data["sites"]
        )
        return cls(
            seed=data["seed"],
            size=data["size"],
            modalities=tuple(data["modalities"]),
            partial_labels=data["partial_labels"],
            labels=data["labels"],
            sites=sites,
        )


def _spec(case: PhantomCase, modality: str, **kwargs: object) -> SeriesSpec:
    seed = f"fedseg-phantom/{case.case_id}"
    names = {"CT": (1, "CT abdomen"), "PT": (2, "PET WB AC"), "MR": (3, "T1 axial liver")}
    number, description = names[modality]
    return SeriesSpec(
        modality=modality,
        patient_id=f"PH{case.site:02d}{case.case:03d}",
        patient_name=f"Phantom^Site{case.site:02d}Case{case.case:03d}",
        patient_sex=case.pt.acquisition.patient_sex if case.pt else "O",
        study_instance_uid=SeriesSpec(modality="CT", uid_seed=seed).uid("study"),
        frame_of_reference_uid=SeriesSpec(modality="CT", uid_seed=seed).uid(
            "frame", "MR" if modality == "MR" else "PETCT"
        ),
        series_number=number,
        series_description=description,
        study_description="fedseg phantom",
        accession_number=f"A{case.site:02d}{case.case:04d}",
        patient_position=case.profile.patient_position,
        manufacturer=case.profile.manufacturer,
        manufacturer_model_name=case.profile.model,
        institution_name=case.profile.institution,
        station_name=f"PHANTOM{case.site:02d}",
        uid_seed=seed,
        study_datetime=case.study_datetime,
        **kwargs,  # type: ignore[arg-type]
    )


def _partial(organs: np.ndarray, annotated: tuple[str, ...]) -> np.ndarray:
    keep = np.isin(organs, [ORGAN_VALUES[name] for name in annotated])
    return np.where(keep, organs, 0).astype(np.uint8)


def pet_truth(case: PhantomCase) -> dict[str, object]:
    """PET acquisition and per-lesion SUV truth (analytic and voxelised) of a case."""
    assert case.pt is not None
    pt = case.pt
    acq = pt.acquisition
    voxel_ml = pt.grid.voxel_volume_ml
    lesions = []
    for number, lesion in enumerate(pt.lesions, start=1):
        lesions.append(
            {
                "id": number,
                "organ": lesion.organ,
                "centre_mm": list(lesion.shape.centre),
                "radii_mm": list(lesion.shape.radii),
                "suv": lesion.suv,
                "activity_bqml": lesion.suv / acq.suv_bw_factor(),
                "analytic": analytic_truth(lesion).describe(),
                "voxelised": lesion_truth(
                    pt.suv, pt.lesion_instances == number, voxel_ml
                ).describe(),
            }
        )
    return {
        "suv_type": "SUVbw",
        "suv_bw_factor": acq.suv_bw_factor(),
        "injected_dose_bq": acq.injected_dose_bq,
        "half_life_s": acq.half_life_s,
        "injection_datetime": acq.injection_datetime.isoformat(),
        "series_datetime": acq.series_datetime.isoformat(),
        "decay_factor": acq.decay_factor(),
        "patient_weight_kg": acq.patient_weight_kg,
        "patient_height_m": acq.patient_height_m,
        "voxel_ml": voxel_ml,
        "lesions": lesions,
        "all_lesions": lesion_truth(pt.suv, pt.lesion_instances > 0, voxel_ml).describe(),
    }


def _write_case(case: PhantomCase, folder: Path, annotated: tuple[str, ...]) -> CaseEntry:
    series: dict[str, str] = {}
    labels: dict[str, Path] = {}
    truth: dict[str, object] = {
        "case_id": case.case_id,
        "absent_organs": list(case.anatomy.absent),
        "annotated_organs": list(annotated),
        "patient_position": case.profile.patient_position,
    }
    lab = folder / "labels"
    if case.ct is not None:
        write_series(folder / "ct", case.ct.hu, case.ct.grid.affine, _spec(case, "CT"))
        labels["ct-organs"] = write_nifti(
            lab / "ct-organs.nii.gz", _partial(case.ct.organs, annotated), case.ct.grid.affine
        )
        labels["body"] = write_nifti(lab / "body.nii.gz", case.ct.body, case.ct.grid.affine)
        counts = np.bincount(case.ct.organs.ravel(), minlength=9)
        truth["organ_voxels"] = {name: int(counts[v]) for v, name in CT_ORGANS.items()}
        series["ct"] = "ct"
    if case.pt is not None:
        spec = _spec(case, "PT", pet=case.pt.acquisition)
        write_series(folder / "pt", case.pt.activity, case.pt.grid.affine, spec)
        affine = case.pt.grid.affine
        mask = (case.pt.lesion_instances > 0).astype(np.uint8)
        labels["pet-lesion"] = write_nifti(lab / "pet-lesion.nii.gz", mask, affine)
        labels["pet-lesion-instances"] = write_nifti(
            lab / "pet-lesion-instances.nii.gz", case.pt.lesion_instances, affine
        )
        truth["pet"] = pet_truth(case)
        series["pt"] = "pt"
    if case.mr is not None:
        write_series(folder / "mr", case.mr.signal, case.mr.grid.affine, _spec(case, "MR"))
        labels["mr-tumour"] = write_nifti(
            lab / "mr-tumour.nii.gz", case.mr.tumour_mask, case.mr.grid.affine
        )
        tumour = case.mr.tumour
        truth["mr"] = {
            "tumour": {
                "class": tumour.kind,
                "centre_mm": list(tumour.centre),
                "radius_mm": tumour.radius_mm,
                "lobes": tumour.lobes,
                "voxels": int(case.mr.tumour_mask.sum()),
                "volume_ml": float(case.mr.tumour_mask.sum() * case.mr.grid.voxel_volume_ml),
            }
        }
        series["mr"] = "mr"
    (folder / TRUTH_NAME).write_text(json.dumps(truth, indent=2) + "\n")
    root = folder.parent.parent
    return CaseEntry(
        case_id=case.case_id,
        path=folder.relative_to(root).as_posix(),
        absent_organs=case.anatomy.absent,
        series={k: (folder / v).relative_to(root).as_posix() for k, v in series.items()},
        labels={k: p.relative_to(root).as_posix() for k, p in labels.items()},
        mr_tumour_class=case.mr.tumour.kind if case.mr is not None else None,
    )


def generate_dataset(
    out_dir: Path,
    config: PhantomConfig,
    progress: Callable[[str], None] | None = None,
) -> DatasetIndex:
    """Generate and write every case of ``config`` under ``out_dir``; returns the index.

    ``progress`` is called with each case id once it is written (the CLI drives a bar with it).
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    sites = []
    profile: dict[str, object] = {}
    for site in range(1, config.sites + 1):
        annotated = config.annotated_organs(site)
        cases = []
        for number in range(1, config.cases_per_site + 1):
            case = make_case(config, site, number)
            profile = case.profile.describe()
            folder = out_dir / f"site-{site:02d}" / f"case-{number:03d}"
            cases.append(_write_case(case, folder, annotated))
            if progress is not None:
                progress(case.case_id)
        sites.append(SiteEntry(f"site-{site:02d}", annotated, profile, tuple(cases)))
    index = DatasetIndex(
        seed=config.seed,
        size=config.size.value,
        modalities=tuple(m.value for m in config.modalities),
        partial_labels=config.partial_labels,
        labels={
            "ct-organs": {str(k): v for k, v in CT_ORGANS.items()},
            "pet-lesion": {str(k): v for k, v in PET_LESION.items()},
            "mr-tumour": {str(k): v for k, v in MR_TUMOUR.items()},
        },
        sites=tuple(sites),
    )
    (out_dir / INDEX_NAME).write_text(json.dumps(index.to_json(), indent=2) + "\n")
    return index
