"""The same cases in nnU-Net v2's raw layout (``imagesTr``, ``labelsTr``, ``dataset.json``).

nnU-Net needs consecutive label values, so its labels are the task's labels that at least one
case contoured, in the task's order, numbered 1..M. A case that lacks some of them marks its
unlabelled voxels with nnU-Net's ``ignore`` label (M + 1): there they may be background or the
missing organ, and the loss must not call them background. ``dataset.json`` also carries a
``fedseg`` entry with each case's contoured labels and the task's own label numbers, for the
federated nnU-Net rounds.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from service.labels.registry import LabelTable
from service.nifti import read_nifti, write_nifti
from training.sitedata.layout import UNKNOWN_POLICY, CaseData, CaseRecord, image_array

IGNORE = "ignore"
_CHANNEL = {"CT": "CT", "PT": "PET", "MR": "MR"}  # "CT" selects nnU-Net's CT normalisation


@dataclass
class NnunetWriter:
    """Writes cases into an nnU-Net raw dataset folder, and ``dataset.json`` at the end."""

    folder: Path
    table: LabelTable
    site: str
    modality: str
    units: str

    def write_case(self, case: CaseData) -> CaseRecord:
        """Write the image and the label map (task numbers; renumbered in :meth:`finish`)."""
        image_path = self.folder / "imagesTr" / f"{case.case_id}_0000.nii.gz"
        label_path = self.folder / "labelsTr" / f"{case.case_id}.nii.gz"
        write_nifti(image_path, image_array(case.image, self.modality), case.affine)
        write_nifti(label_path, case.labels, case.affine)
        return case.record(self.folder, image_path, label_path)

    def finish(self, records: Sequence[CaseRecord], policy: Mapping[str, str]) -> Path:
        """Renumber the label maps to nnU-Net's labels and write ``dataset.json``."""
        used = {name for r in records for name in r.contoured}
        entries = [e for e in sorted(self.table.labels, key=lambda e: e.number) if e.name in used]
        new = {e.number: n for n, e in enumerate(entries, start=1)}
        ignore = len(entries) + 1
        partial = any(set(r.contoured) != used for r in records)
        for record in records:
            self._renumber(record, new, ignore if set(record.contoured) != used else None)
        labels: dict[str, int] = {"background": 0, **{e.name: new[e.number] for e in entries}}
        if partial:
            labels[IGNORE] = ignore
        dataset = {
            "channel_names": {"0": _CHANNEL.get(self.modality, self.modality)},
            "labels": labels,
            "numTraining": len(records),
            "file_ending": ".nii.gz",
            "name": f"fedseg-{self.site}-{self.table.task}",
            "description": f"{self.table.task} cases of {self.site} built by fedseg ({self.units})",
            "fedseg": {
                "site": self.site,
                "task": self.table.task,
                "units": self.units,
                "task_label_numbers": {e.name: e.number for e in entries},
                "unknown": UNKNOWN_POLICY + f"; nnU-Net's 'ignore' ({ignore}) marks such voxels",
                "policy": dict(policy),
                "cases": {
                    r.case_id: {
                        "subject": r.subject,
                        "contoured": list(r.contoured),
                        "volumes_ml": dict(r.volumes_ml),
                    }
                    for r in records
                },
            },
        }
        path = self.folder / "dataset.json"
        path.write_text(json.dumps(dataset, indent=2, ensure_ascii=False) + "\n")
        return path

    def _renumber(self, record: CaseRecord, new: Mapping[int, int], ignore: int | None) -> None:
        path = self.folder / record.label
        identity = all(old == value for old, value in new.items())
        if identity and ignore is None:
            return
        labels, affine = read_nifti(path)
        lookup = np.zeros(max(e.number for e in self.table.labels) + 1, dtype=np.uint8)
        for old, value in new.items():
            lookup[old] = value
        out = lookup[np.asarray(labels, dtype=np.intp)]
        if ignore is not None:
            out[labels == 0] = ignore
        write_nifti(path, out, affine)
