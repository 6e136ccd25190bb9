"""Segment a study: pick the series each model applies to, infer, check, write the results.

This is the product's main job, shared by ``fedseg segment`` and the service's workers:
``read → select series (routing, series rules, intended use) → infer → QC → write``, with the
time of each stage recorded. Series outside a model's intended use are skipped with their
reasons; structures that fail QC are flagged, and withheld from SEG and RTSTRUCT under the
``withhold`` policy (:mod:`service.qc.report`).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np

from service.config import Settings
from service.dicom.volume import Discovery, Volume, VolumePlan, discover, load_volume
from service.errors import FedsegError, ModelBundleError
from service.imaging.resample import Grid, resample
from service.inference.bundle import ModelBundle
from service.inference.manifest import Manifest, NormalisationKind
from service.inference.pipeline import ModelSegmenter, open_segmenter
from service.inference.preprocess import model_values
from service.inference.session import Device, Engine, Mirroring, Precision, SessionOptions
from service.inference.sliding_window import Progress
from service.inference.store import ModelStore
from service.pet.body_size import SuvType
from service.qc.applicability import (
    Applicability,
    Finding,
    check_channel_image,
    patient_age_years,
)
from service.qc.body import BodyAnalysis, analyse_body
from service.qc.enum import QcPolicy
from service.qc.report import SeriesQc, run_qc
from service.results.crops import region_crops
from service.results.kinds import ResultKind
from service.results.outputs import OutputOptions, write_outputs
from service.results.provenance import AlgorithmIdentity
from service.results.sources import Sources, SourceSeries
from service.selection import (
    Candidate,
    Refused,
    Rule,
    SeriesAttributes,
    Skipped,
    confirm,
    routed_models,
    select_series,
)

logger = logging.getLogger(__name__)

STAGES = ("read", "preprocess", "infer", "postprocess", "write")


@dataclass(frozen=True)
class SegmentOptions:
    """Which models to run, where, and what to write."""

    models: tuple[str, ...] = ()  # names or bundle folders; empty: every installed model
    any_folder: bool = True  # bundle folders outside the stores (a local user); server: False
    device: Device = Device.AUTO
    engine: Engine | None = None  # None: the settings' inference_engine (segment_study)
    precision: Precision | None = None  # None: the settings' inference_precision
    fast: bool = False  # less window overlap, for a quick look
    mirroring: Mirroring | None = None  # test-time mirroring; None: the settings' (model)
    batch_size: int = 2
    threads: int | None = None  # onnxruntime intra-op threads; 0: one per physical core;
    # None: the settings' inference_threads (segment_study fills it in)
    output: OutputOptions = field(default_factory=OutputOptions)
    force: bool = False  # run models on series outside their intended use (still QC'd)
    qc_policy: QcPolicy | None = None  # None: the settings' qc_policy


@dataclass
class SeriesResult:
    """What happened to one series under one model."""

    series_instance_uid: str
    modality: str
    task: str
    model: str
    model_version: str
    provider: str = ""
    mirroring: bool = False  # predictions averaged over mirrored inputs
    present: list[str] = field(default_factory=list)
    outputs: dict[str, str] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    error: str | None = None
    intended_use: str = ""
    skipped: bool = False  # outside the model's intended use, not segmented
    applicability: dict[str, object] = field(default_factory=dict)
    qc: dict[str, object] | None = None  # service.qc.report.SeriesQc.as_dict()
    # Series of a multi-channel model's channels 1, 2, … (resampled onto this one's grid).
    secondary_series: list[str] = field(default_factory=list)


@dataclass
class StudyResult:
    """All series results of a study and the time spent in each stage."""

    series: list[SeriesResult]
    timings: dict[str, float]

    @property
    def failed(self) -> bool:
        """Whether any series could not be segmented or written."""
        return any(s.error for s in self.series)

    @property
    def segmented(self) -> list[SeriesResult]:
        """The series a model ran on."""
        return [s for s in self.series if not s.skipped]

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


class StudySegmenter:
    """Runs the chosen bundles on a study; sessions are created once per bundle."""

    def __init__(self, bundles: Sequence[ModelBundle], options: SegmentOptions) -> None:
        self.options = options
        threads = options.threads or 0
        session = SessionOptions(
            device=options.device,
            engine=options.engine or Engine.ONNXRUNTIME,
            intra_op_threads=threads,
            precision=options.precision or Precision.F32,
        )
        self.segmenters = [
            open_segmenter(
                b,
                session,
                batch_size=options.batch_size,
                mirroring=options.mirroring or Mirroring.MODEL,
            )
            for b in bundles
        ]
        if options.fast:
            for segmenter in self.segmenters:
                segmenter.use_fast_tiling()

    def run(
        self,
        inputs: Sequence[Path],
        out_dir: Path,
        settings: Settings,
        progress: Callable[[str], Progress] | None = None,
    ) -> StudyResult:
        """Segment every series that a bundle applies to and write the results."""
        start = time.perf_counter()
        found = discover(inputs, settings)
        return self.run_found(found, out_dir, settings, progress, time.perf_counter() - start)

    def run_found(
        self,
        found: Discovery,
        out_dir: Path,
        settings: Settings,
        progress: Callable[[str], Progress] | None = None,
        read_s: float = 0.0,
    ) -> StudyResult:
        """Like :meth:`run`, on headers already read (the selection step reads them once)."""
        timings = dict.fromkeys(STAGES, 0.0)
        timings["read"] = read_s
        bundles = [s.bundle for s in self.segmenters]
        selection = select_series(found.plans, bundles, self.options.force)
        if not selection.candidates and not selection.skipped and not selection.refused:
            modalities = sorted({p.modality for p in found.plans}) or ["no images"]
            models = ", ".join(f"{b.manifest.name} ({b.manifest.modality})" for b in bundles)
            raise FedsegError(
                f"no model applies to this study (series: {', '.join(modalities)}; "
                f"models: {models})"
            )
        policy = self.options.qc_policy or settings.qc_policy
        results = [_skipped(s) for s in selection.skipped]
        results.extend(_refused(r) for r in selection.refused)
        by_bundle = {id(s.bundle): s for s in self.segmenters}
        total = len(selection.candidates)
        for index, candidate in enumerate(selection.candidates, start=1):
            manifest = candidate.bundle.manifest
            target = out_dir if total == 1 else out_dir / f"{index:02d}-{manifest.task}"
            bar = progress(f"{manifest.task} {candidate.plan.modality}") if progress else None
            segmenter = by_bundle[id(candidate.bundle)]
            results.append(self._one(candidate, segmenter, target, timings, bar, policy))
        out_dir.mkdir(parents=True, exist_ok=True)
        study = StudyResult(series=results, timings={k: round(v, 3) for k, v in timings.items()})
        (out_dir / ResultKind.SUMMARY.filename).write_text(
            json.dumps(study.as_dict(out_dir), indent=2) + "\n"
        )
        return study

    def _write(
        self,
        volume: Volume,
        labels: np.ndarray,
        segmenter: ModelSegmenter,
        out_dir: Path,
        result: SeriesResult,
        qc: SeriesQc,
        values: np.ndarray,
        sources: Sources,
    ) -> dict[str, str]:
        """Write the result files; a series where nothing was found gets only its JSON.

        ``sources`` are every series the labels were derived from, ``volume``'s first.
        """
        if not result.present:
            result.warnings.append("no structure found; only measurements.json was written")
            return {ResultKind.MEASUREMENTS.value: str(_write_empty(out_dir, result))}
        manifest = segmenter.bundle.manifest
        table = manifest.label_table()
        intended = manifest.intended_use
        algorithm = AlgorithmIdentity(
            manifest.name, manifest.version, intended.summary(), intended.research_only
        )
        output = self.options.output
        # The values the model saw are the ones to measure (PET: SUVs, converted once), unless
        # the results ask for another SUV type than the model's.
        same_unit = volume.modality != "PT" or (
            manifest.normalisation is not None
            and manifest.normalisation.kind is NormalisationKind.SUV
            and SuvType(manifest.normalisation.suv_type) is output.suv_type
        )
        # The label map itself: the writers cut one structure at a time out of it.
        measured = values if same_unit else None
        written = write_outputs(
            volume, labels, table, algorithm, out_dir, output, measured, qc=qc, sources=sources
        )
        result.warnings.extend(written.warnings)
        return {fmt.value: str(path) for fmt, path in written.paths.items()}

    def _one(
        self,
        candidate: Candidate,
        segmenter: ModelSegmenter,
        out_dir: Path,
        timings: dict[str, float],
        progress: Progress | None,
        policy: QcPolicy,
    ) -> SeriesResult:
        result = _result(candidate.plan, candidate.bundle, candidate.applicability)
        result.provider = segmenter.provider
        result.mirroring = segmenter.mirroring
        manifest = candidate.bundle.manifest
        try:
            start = time.perf_counter()
            volume = load_volume(candidate.plan)
            values = model_values(volume, manifest.normalisation)
            body = (
                analyse_body(values, volume.affine, volume.modality)
                if _qc_values(manifest, volume)
                else None
            )
            verdict = confirm(candidate, volume, body)
            secondary: list[np.ndarray] = []
            if verdict.runs:
                for index, plan in enumerate(candidate.secondary, start=1):
                    channel = secondary_values(plan, index, volume, manifest)
                    verdict = verdict.extended(channel.findings)
                    secondary.append(channel.values)
            result.applicability = verdict.as_dict()
            if not verdict.runs:
                timings["read"] += time.perf_counter() - start
                result.skipped = True
                result.warnings.extend(_skip_messages(verdict))
                return result
            result.secondary_series = [p.stack.series_instance_uid for p in candidate.secondary]
            timings["read"] += time.perf_counter() - start
            segmentation = segmenter.segment(volume, progress, values, secondary)
            del secondary
            for stage, seconds in segmentation.timings.items():
                timings[stage] += seconds
            result.timings = {k: round(v, 3) for k, v in segmentation.timings.items()}
            result.present = segmentation.present
            labels = segmentation.labels
            del segmentation  # its model values are ``values``, kept for QC and measuring
            start = time.perf_counter()
            qc = _series_qc(volume, labels, values, body, manifest, policy)
            result.qc = qc.as_dict()
            sources = Sources.of(volume, [SourceSeries.of_plan(p) for p in candidate.secondary])
            result.outputs = self._write(
                volume, labels, segmenter, out_dir, result, qc, values, sources
            )
            elapsed = time.perf_counter() - start
            timings["write"] += elapsed
            result.timings["write"] = round(elapsed, 3)
        except FedsegError as exc:
            logger.error("series %s: %s", candidate.plan.stack.series_instance_uid, exc)
            result.error = str(exc)
        return result


@dataclass(frozen=True)
class ChannelValues:
    """A further input channel, read: its values on the primary's grid and its image checks."""

    values: np.ndarray
    findings: tuple[Finding, ...]


def secondary_values(
    plan: VolumePlan, index: int, primary: Volume, manifest: Manifest
) -> ChannelValues:
    """Channel ``index``'s model values, resampled (linear) onto the primary's grid.

    The values follow :func:`model_values` with the bundle's normalisation, as channel 0's do:
    an nnU-Net bundle (no fedseg normalisation) sees every channel as read (HU, PET in its
    stored unit). Outside the series' extent the channel takes its lowest value. The series'
    own image is checked against the channel's intended use (body present, regions seen), on
    its own grid, before resampling, as channel 0's is.
    """
    volume = load_volume(plan)
    values = model_values(volume, manifest.normalisation)
    body = (
        analyse_body(values, volume.affine, volume.modality)
        if _qc_values(manifest, volume)
        else None
    )
    recipe = manifest.nnunet
    name = recipe.channels[index].name if recipe is not None else str(index)
    where = f"channel {index} ({name}) series {plan.stack.series_instance_uid}"
    findings = check_channel_image(volume.header, body, manifest.channel_intended_use(index), where)
    source = Grid(shape=volume.array.shape, affine=volume.affine)
    target = Grid(shape=primary.array.shape, affine=primary.affine)
    fill = float(values.min()) if values.size else 0.0
    resampled = resample(np.asarray(values, dtype=np.float32), source, target, order=1, fill=fill)
    return ChannelValues(resampled, tuple(findings))


def _qc_values(manifest: Manifest, volume: Volume) -> bool:
    """Whether the model values are in the unit QC judges (PET: only SUV)."""
    return volume.modality != "PT" or (
        manifest.normalisation is not None and manifest.normalisation.kind is NormalisationKind.SUV
    )


def _series_qc(
    volume: Volume,
    labels: np.ndarray,
    values: np.ndarray,
    body: BodyAnalysis | None,
    manifest: Manifest,
    policy: QcPolicy,
) -> SeriesQc:
    """QC of every structure of the label map (none under policy ``off``)."""
    crops = list(region_crops(labels, volume, manifest.label_table()))
    return run_qc(
        crops,
        values,
        volume.affine,
        volume.modality,
        body,
        patient_age_years(volume.header),
        policy,
        manifest.intended_use.summary(),
    )


def _result(plan: VolumePlan, bundle: ModelBundle, verdict: Applicability) -> SeriesResult:
    attributes = SeriesAttributes.of(plan)
    manifest = bundle.manifest
    return SeriesResult(
        series_instance_uid=attributes.series_instance_uid,
        modality=attributes.modality,
        task=manifest.task,
        model=manifest.name,
        model_version=manifest.version,
        warnings=list(plan.warnings),
        intended_use=manifest.intended_use.summary(),
        applicability=verdict.as_dict(),
    )


def _skip_messages(verdict: Applicability) -> list[str]:
    return [f"outside the model's intended use, not segmented: {'; '.join(verdict.reasons)}"]


def _skipped(skipped: Skipped) -> SeriesResult:
    """The result of a series the header already put outside a model's intended use."""
    result = _result(skipped.plan, skipped.bundle, skipped.applicability)
    result.skipped = True
    result.warnings.extend(_skip_messages(skipped.applicability))
    return result


def _refused(refused: Refused) -> SeriesResult:
    """The result of a primary series a multi-channel model lacks another channel's series for."""
    result = _result(refused.plan, refused.bundle, Applicability(()))
    result.error = refused.reason
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
    rules: Sequence[Rule] = (),
) -> StudyResult:
    """Segment a study with the chosen (or routed, or all installed) models; see module doc.

    The headers are read once: routing ``rules`` (the server's) pick the models unless
    ``options`` names them, and the selection step pairs series with models.
    """
    if options.threads is None:
        options = replace(options, threads=settings.inference_threads)
    if options.engine is None:
        options = replace(options, engine=settings.inference_engine)
    if options.precision is None:
        options = replace(options, precision=settings.inference_precision)
    if options.mirroring is None:
        options = replace(options, mirroring=settings.inference_mirroring)
    start = time.perf_counter()
    found = discover(inputs, settings)
    names = options.models
    if not names and rules:
        names = routed_models(rules, [SeriesAttributes.of(p) for p in found.plans])
        if names:
            logger.info("routing rules chose models %s", ", ".join(names))
    bundles = choose_bundles(store_for(settings), names, options.any_folder)
    segmenter = StudySegmenter(bundles, options)
    return segmenter.run_found(found, out_dir, settings, progress, time.perf_counter() - start)
