"""One ``plans.json`` for the federation, made by nnU-Net's own planner from the pooled fingerprint.

The server holds no image. nnU-Net's ``ExperimentPlanner`` reads three things:

- ``dataset_fingerprint.json`` from ``nnUNet_preprocessed/<dataset>``: the pooled fingerprint
  (:meth:`federation.nnunet.fingerprint.SiteFingerprint.nnunet_fingerprint`);
- ``dataset.json`` from ``nnUNet_raw/<dataset>``: the federation's dataset description
  (:func:`federation_dataset_json`: the channels and the union of the sites' labels, with
  ``numTraining`` the pooled case count);
- the list of training files, only to pick the image reader from an example file. The server's
  ``dataset.json`` names the reader (``overwrite_image_reader_writer``, nnU-Net's own switch;
  ``SimpleITKIO``, what nnU-Net picks for the sites' ``.nii.gz``) and lists one placeholder case
  under nnU-Net's ``dataset`` key whose files do not exist: the planner lists it and opens nothing.

So the plans are nnU-Net's plans of the pooled data, except where the pooled fingerprint
differs from nnU-Net's fingerprint of the pooled cases (percentiles within half an intensity
bin, spacings within half a spacing bin; see :mod:`federation.nnunet.fingerprint`). Every site
gets the same :class:`SharedPlans` (plans, dataset.json and fingerprint) and preprocesses its
own cases with them (:mod:`training.nnunet.local_round`).
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from training.nnunet.environment import nnunet_folders
from training.nnunet.federated_plans import IGNORE, SharedPlans

#: The reader nnU-Net picks for ``.nii.gz`` files (first in its reader list that reads them).
READER = "SimpleITKIO"


@dataclass(frozen=True)
class SiteDataset:
    """What a site says about its dataset besides the fingerprint (no per-case value).

    Read from the ``dataset.json`` that ``fedseg dataset build --format nnunet`` wrote.
    """

    site: str
    task: str
    channel_names: Mapping[str, str]
    #: The labels the site contours, in the task's order (no background, no ignore).
    labels: tuple[str, ...]
    file_ending: str
    cases: int

    @classmethod
    def of_folder(cls, folder: Path) -> SiteDataset:
        """Read a site's nnU-Net dataset folder.

        Raises
        ------
        ValueError
            If ``dataset.json`` is missing or was not written by ``fedseg dataset build``.
        """
        path = folder / "dataset.json"
        if not path.is_file():
            raise ValueError(
                f"{path} is missing: build the site's folder with "
                "'fedseg dataset build --format nnunet'"
            )
        data = json.loads(path.read_text())
        fedseg = data.get("fedseg")
        if not isinstance(fedseg, dict):
            raise ValueError(
                f"{path} has no 'fedseg' entry: build the site's folder with "
                "'fedseg dataset build --format nnunet'"
            )
        numbers = fedseg["task_label_numbers"]
        labels = tuple(sorted(numbers, key=lambda name: numbers[name]))
        return cls(
            site=str(fedseg["site"]),
            task=str(fedseg["task"]),
            channel_names=dict(data["channel_names"]),
            labels=labels,
            file_ending=str(data["file_ending"]),
            cases=int(data["numTraining"]),
        )

    def as_json(self) -> dict[str, object]:
        """What the site sends."""
        return {
            "site": self.site,
            "task": self.task,
            "channel_names": dict(self.channel_names),
            "labels": list(self.labels),
            "file_ending": self.file_ending,
            "cases": self.cases,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> SiteDataset:
        """Inverse of :meth:`as_json`."""
        return cls(
            site=str(data["site"]),
            task=str(data["task"]),
            channel_names=dict(data["channel_names"]),
            labels=tuple(data["labels"]),
            file_ending=str(data["file_ending"]),
            cases=int(data["cases"]),
        )


def federation_dataset_json(
    sites: Sequence[SiteDataset], name: str, labels: Sequence[str] | None = None
) -> dict[str, Any]:
    """The federation's ``dataset.json``: every site trains with these label values.

    ``labels`` (task order) defaults to the union of the sites' labels in the task's order.
    An ``ignore`` label (highest value) is added when some site lacks a label: there the site
    marks background as ignore, since it may hold the missing organ.

    Raises
    ------
    ValueError
        If no site is given, or the sites' tasks, channels or file endings differ.
    """
    if not sites:
        raise ValueError("the federation's dataset needs at least one site")
    first = sites[0]
    for site in sites[1:]:
        for field_name in ("task", "channel_names", "file_ending"):
            if getattr(site, field_name) != getattr(first, field_name):
                raise ValueError(
                    f"sites {first.site} and {site.site} differ in {field_name}: "
                    f"{getattr(first, field_name)!r} and {getattr(site, field_name)!r}; "
                    "build every site's folder for the same task and modality"
                )
    if labels is None:
        from service.labels import get_table

        order = [e.name for e in sorted(get_table(first.task).labels, key=lambda e: e.number)]
        used = {name for site in sites for name in site.labels}
        labels = [name for name in order if name in used]
    values: dict[str, int] = {"background": 0, **{n: i for i, n in enumerate(labels, start=1)}}
    if any(set(site.labels) != set(labels) for site in sites):
        values[IGNORE] = len(labels) + 1
    return {
        "channel_names": dict(first.channel_names),
        "labels": values,
        "numTraining": sum(site.cases for site in sites),
        "file_ending": first.file_ending,
        "name": name,
        "description": f"fedseg federation of {len(sites)} sites ({first.task})",
        "overwrite_image_reader_writer": READER,
        "fedseg": {"task": first.task, "sites": {s.site: list(s.labels) for s in sites}},
    }


def dataset_name(dataset_id: int, name: str) -> str:
    """nnU-Net's ``DatasetNNN_Name`` (``name`` without spaces or underscores)."""
    if not 1 <= dataset_id <= 999:
        raise ValueError(f"an nnU-Net dataset id lies in 1..999, got {dataset_id}")
    clean = "".join(ch for ch in name.title() if ch.isalnum())
    if not clean:
        raise ValueError(f"dataset name {name!r} has no letter or digit")
    return f"Dataset{dataset_id:03d}_{clean}"


def plan(
    fingerprint: Mapping[str, Any],
    dataset: Mapping[str, Any],
    name: str,
    planner: str = "ExperimentPlanner",
    work: Path | None = None,
) -> SharedPlans:
    """nnU-Net's planner on the pooled fingerprint: the plans every site trains with.

    Parameters
    ----------
    fingerprint
        The pooled fingerprint in ``dataset_fingerprint.json`` form.
    dataset
        The federation's ``dataset.json`` (:func:`federation_dataset_json`).
    name
        nnU-Net's dataset name (:func:`dataset_name`).
    planner
        nnU-Net's planner class (``ExperimentPlanner``, or a ResEnc planner).
    work
        Scratch folder (a temporary one by default); it only ever holds JSON files.
    """
    import nnunetv2
    from nnunetv2.experiment_planning.experiment_planners import default_experiment_planner
    from nnunetv2.utilities.find_class_by_name import recursive_find_python_class

    planner_class = recursive_find_python_class(
        str(Path(nnunetv2.__path__[0]) / "experiment_planning"),
        planner,
        current_module="nnunetv2.experiment_planning",
    )
    if planner_class is None:
        raise ValueError(f"nnU-Net has no experiment planner {planner!r}")
    raw_dataset = dict(dataset)
    # nnU-Net lists the training files only to find a reader; name it and list a placeholder.
    raw_dataset["overwrite_image_reader_writer"] = READER
    ending = str(dataset["file_ending"])
    raw_dataset["dataset"] = {
        "pooled": {"images": [f"no-image-on-the-server{ending}"], "label": f"none{ending}"}
    }
    with tempfile.TemporaryDirectory(dir=work) as scratch:
        root = Path(scratch)
        with nnunet_folders(root):
            (root / "raw" / name).mkdir(parents=True)
            (root / "raw" / name / "dataset.json").write_text(json.dumps(raw_dataset))
            (root / "preprocessed" / name).mkdir(parents=True)
            (root / "preprocessed" / name / "dataset_fingerprint.json").write_text(
                json.dumps(fingerprint)
            )
            assert issubclass(planner_class, default_experiment_planner.ExperimentPlanner)
            plans = planner_class(name).plan_experiment()
    return SharedPlans(
        plans=json.loads(json.dumps(plans)),
        dataset={k: v for k, v in dataset.items() if k != "dataset"},
        fingerprint=json.loads(json.dumps(fingerprint)),
    )
