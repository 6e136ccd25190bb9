"""Segment a study: pick the series each model applies to, infer, write SEG/RTSTRUCT/SR/JSON.

This is the product's main job, shared by ``fedseg segment`` and the service's workers:
``read → select series → infer → write``, with the time of each stage recorded.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from service.config import Settings
from service.dicom.volume import Volume, VolumePlan, discover, load_volume
from service.errors import FedsegError, ModelBundleError
from service.inference.bundle import ModelBundle
from service.inference.manifest import NormalisationKind
from service.inference.pipeline import Segmentation, Segmenter
from service.inference.session import Device, SessionOptions
from service.inference.sliding_window import Progress
from service.inference.store import ModelStore
from service.pet.body_size import SuvType
from service.results.kinds import ResultKind
from service.results.outputs import OutputOptions, write_outputs
from service.results.provenance import AlgorithmIdentity

logger = logging.getLogger(__name__)

STAGES = ("read", "preprocess", "infer", "postprocess", "write")


@dataclass(frozen=True)
class SegmentOptions:
    """Which models to run, where, and what to write."""

    models: tuple[str, ...] = ()  # names or bundle folders; empty: every installed model
    any_folder: bool = True  # bundle folders outside the stores (a local user); server: False
    device: Device = Device.AUTO
    fast: bool = False  # less window overlap, for a quick look
    mirror_tta: bool = False  # average over mirrored inputs (slower, smoother)
    batch_size: int = 2
    threads: int | None = None  # onnxruntime intra-op threads; 0: one per physical core;
    # None: the settings' inference_threads (segment_study fills it in)
    output: OutputOptions = field(default_factory=OutputOptions)


@dataclass
class SeriesResult:
    """What happened to one series under one model."""

    series_instance_uid: str
    modality: str
    task: str
    model: str
    model_version: str
    provider: str = ""
    present: list[str] = field(default_factory=list)
    outputs: dict[str, str] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    error: str | None = None


@dataclass
class StudyResult:
    """All series results of a study and the time spent in each stage."""

    series: list[SeriesResult]
    timings: dict[str, float]

    @property
    def failed(self) -> bool:
        """Whether any series could not be segmented or written."""
        return any(s.error for s in self.series)

    def as_dict(self, relative_to: Path | None = None) -> dict[str, object]:
        """JSON-ready summary (no patient identifiers); output paths relative to a folder."""
        series = [asdict(s) for s in self.series]
        if relative_to is not None:
            # summary.json sits in the output folder: no server or user paths in it.
            for entry in series:
                entry["outputs"] = {
                    kind: str(Path(path).relative_to(relative_to))
                    for kind, path in entry["outputs"].items()
                }
        return {"series": series, "timings_s": self.timings}


def store_for(settings: Settings) -> ModelStore:
    """The model store: the writable store first, then the bundles shipped with fedseg."""
    return ModelStore(roots=(settings.model_store, settings.shipped_models))


def choose_bundles(
    store: ModelStore, names: Sequence[str], any_folder: bool = True
) -> list[ModelBundle]:
    """The bundles to run: those named, or the newest installed one of every task."""
    if names:
        return [store.resolve(name, any_folder=any_folder) for name in names]
    newest = [store.for_task(task) for task in sorted({b.manifest.task for b in store.bundles()})]
    found = [bundle for bundle in newest if bundle is not None]
    if not found:
        raise ModelBundleError(
            f"no model bundles installed in {', '.join(str(r) for r in store.roots)}; "
            "install one (fedseg export / POST /v1/models) or pass --model PATH"
        )
    return found


def applies(bundle: ModelBundle, plan: VolumePlan) -> bool:
    """Whether ``bundle``'s series rules select this series."""
    manifest = bundle.manifest
    header = plan.header
    description = str(header.get("SeriesDescription", ""))
    body_part = str(header.get("BodyPartExamined", ""))
    rules = manifest.series
    if not rules:
        return plan.modality.upper() == manifest.modality.upper()
    return any(rule.matches(plan.modality, description, body_part) for rule in rules)


class StudySegmenter:
    """Runs the chosen bundles on a study; sessions are created once per bundle."""

    def __init__(self, bundles: Sequence[ModelBundle], options: SegmentOptions) -> None:
        self.options = options
        threads = options.threads or 0
        session = SessionOptions(device=options.device, intra_op_threads=threads)
        self.segmenters = [
            Segmenter(b, session, batch_size=options.batch_size, mirror_tta=options.mirror_tta)
            for b in bundles
        ]
        if options.fast:
            for segmenter in self.segmenters:
                segmenter.window = replace(segmenter.window, overlap=0.25)

    def run(
        self,
        inputs: Sequence[Path],
        out_dir: Path,
        settings: Settings,
        progress: Callable[[str], Progress] | None = None,
    ) -> StudyResult:
        """Segment every series that a bundle applies to and write the results."""
        timings = dict.fromkeys(STAGES, 0.0)
        start = time.perf_counter()
        found = discover(inputs, settings)
        pairs = [(p, s) for s in self.segmenters for p in found.plans if applies(s.bundle, p)]
        timings["read"] += time.perf_counter() - start
        if not pairs:
            modalities = sorted({p.modality for p in found.plans}) or ["no images"]
            models = ", ".join(
                f"{s.bundle.manifest.name} ({s.bundle.manifest.modality})" for s in self.segmenters
            )
            raise FedsegError(
                f"no model applies to this study (series: {', '.join(modalities)}; "
                f"models: {models})"
            )
        results = []
        for index, (plan, segmenter) in enumerate(pairs, start=1):
            target = (
                out_dir
                if len(pairs) == 1
                else out_dir / f"{index:02d}-{segmenter.bundle.manifest.task}"
            )
            bar = (
                progress(f"{segmenter.bundle.manifest.task} {plan.modality}") if progress else None
            )
            results.append(self._one(plan, segmenter, target, timings, bar))
        out_dir.mkdir(parents=True, exist_ok=True)
        study = StudyResult(series=results, timings={k: round(v, 3) for k, v in timings.items()})
        (out_dir / ResultKind.SUMMARY.filename).write_text(
            json.dumps(study.as_dict(out_dir), indent=2) + "\n"
        )
        return study

    def _write(
        self,
        volume: Volume,
        segmentation: Segmentation,
        segmenter: Segmenter,
        out_dir: Path,
        result: SeriesResult,
    ) -> dict[str, str]:
        """Write the result files; a series where nothing was found gets only its JSON."""
        if not result.present:
            result.warnings.append("no structure found; only measurements.json was written")
            return {ResultKind.MEASUREMENTS.value: str(_write_empty(out_dir, result))}
        manifest = segmenter.bundle.manifest
        table = manifest.label_table()
        algorithm = AlgorithmIdentity(manifest.name, manifest.version)
        output = self.options.output
        # The values the model saw are the ones to measure (PET: SUVs, converted once), unless
        # the results ask for another SUV type than the model's.
        same_unit = volume.modality != "PT" or (
            manifest.normalisation.kind is NormalisationKind.SUV
            and SuvType(manifest.normalisation.suv_type) is output.suv_type
        )
        values = segmentation.values if same_unit else None
        # The label map itself: the writers cut one structure at a time out of it.
        written = write_outputs(
            volume, segmentation.labels, table, algorithm, out_dir, output, values
        )
        result.warnings.extend(written.warnings)
        return {fmt.value: str(path) for fmt, path in written.paths.items()}

    def _one(
        self,
        plan: VolumePlan,
        segmenter: Segmenter,
        out_dir: Path,
        timings: dict[str, float],
        progress: Progress | None,
    ) -> SeriesResult:
        manifest = segmenter.bundle.manifest
        result = SeriesResult(
            series_instance_uid=plan.stack.series_instance_uid,
            modality=plan.modality,
            task=manifest.task,
            model=manifest.name,
            model_version=manifest.version,
            provider=segmenter.provider,
            warnings=list(plan.warnings),
        )
        try:
            start = time.perf_counter()
            volume = load_volume(plan)
            timings["read"] += time.perf_counter() - start
            segmentation = segmenter.segment(volume, progress)
            for stage, seconds in segmentation.timings.items():
                timings[stage] += seconds
            result.timings = {k: round(v, 3) for k, v in segmentation.timings.items()}
            result.present = segmentation.present
            start = time.perf_counter()
            result.outputs = self._write(volume, segmentation, segmenter, out_dir, result)
            elapsed = time.perf_counter() - start
            timings["write"] += elapsed
            result.timings["write"] = round(elapsed, 3)
        except FedsegError as exc:
            logger.error("series %s: %s", plan.stack.series_instance_uid, exc)
            result.error = str(exc)
        return result


def _write_empty(out_dir: Path, result: SeriesResult) -> Path:
    """measurements.json of a series in which the model found nothing."""
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / ResultKind.MEASUREMENTS.filename
    body = {"series_instance_uid": result.series_instance_uid, "task": result.task, "segments": []}
    path.write_text(json.dumps(body, indent=2) + "\n")
    return path


def segment_study(
    inputs: Sequence[Path],
    out_dir: Path,
    options: SegmentOptions,
    settings: Settings,
    progress: Callable[[str], Progress] | None = None,
) -> StudyResult:
    """Segment a study folder with the chosen (or all installed) models; see module doc."""
    if options.threads is None:
        options = replace(options, threads=settings.inference_threads)
    bundles = choose_bundles(store_for(settings), options.models, options.any_folder)
    return StudySegmenter(bundles, options).run(inputs, out_dir, settings, progress)
