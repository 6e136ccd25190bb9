"""The series a result was made from, and every list in which the writers reference them.

A one-channel model derives its result from one series. A multi-channel model (PET/CT) derives
it from several: the primary, whose grid the result lies on, and the series of its further
channels, resampled onto that grid (:func:`service.segment.secondary_values`). Every written
object names all of them, primary first, and the lists it names them in are built here:

- DICOM-SEG: every instance of every series in the Common Instance Reference module
  (ReferencedSeriesSequence) and the top-level SourceImageSequence; each frame's Derivation
  Image Sequence lists its own source plane and then the planes of the further series that
  linear interpolation onto that plane reads, with purpose of reference DCM 121322 "Source
  image for image processing operation" (CID 7202) and SpatialLocationsPreserved ``NO``, since
  they were resampled.
- RTSTRUCT: the contours reference the primary's planes, on which they are drawn; the
  Referenced Frame of Reference Sequence lists every series under RT Referenced Series, the
  primary first.
- TID 1500 SR: the Image Library holds one group per series; each measurement group cites the
  planes of every series its segment was derived from ("Source image for segmentation"; a
  result of one series cites it as "Source series for segmentation"); the evidence lists
  every instance the content references.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import highdicom as hd
import numpy as np
from pydicom.dataset import Dataset
from pydicom.sr.codedict import codes

from service.dicom.planes import derived_study_uid
from service.dicom.volume import SliceRef, Volume, VolumePlan
from service.errors import DicomInputError
from service.results.provenance import series_frame_of_reference_uid

#: PS3.16 CID 7202: the purpose of every derivation reference fedseg writes.
SOURCE_PURPOSE = hd.sr.CodedConcept.from_code(codes.cid7202.SourceImageForImageProcessingOperation)
#: RT Referenced Study items reference the study as a Detached Study Management SOP (PS3.3).
STUDY_COMPONENT_SOP_CLASS = "1.2.840.10008.3.1.2.3.1"
_LIBRARY_ENTRY = hd.sr.CodedConcept("260753009", "SCT", "Source")
_MODALITIES = {code.value: code for code in codes.cid29.concepts.values()}


@dataclass(frozen=True)
class SourceImage:
    """One source plane: an instance, and its frame when the instance holds several."""

    sop_class_uid: str
    sop_instance_uid: str
    frame_number: int | None = None

    def __post_init__(self) -> None:
        if not self.sop_class_uid or not self.sop_instance_uid:
            raise DicomInputError("a source image needs its SOP Class and SOP Instance UIDs")

    def item(self) -> Dataset:
        """The Image SOP Instance Reference of this plane (Referenced SOP Class/Instance)."""
        ds = Dataset()
        ds.ReferencedSOPClassUID = self.sop_class_uid
        ds.ReferencedSOPInstanceUID = self.sop_instance_uid
        if self.frame_number is not None:
            ds.ReferencedFrameNumber = self.frame_number
        return ds


@dataclass(frozen=True, eq=False)
class SourceSeries:
    """One input series: its identity, its planes in order and where each plane lies.

    ``grid`` maps voxel ``(i, j, k)`` of the series' volume to patient LPS mm, ``shape`` is that
    volume's size and ``positions`` the ImagePositionPatient of each of ``images``. On a regular
    stack plane ``k`` is ``images[k]``; a regularised one (uneven spacing, tilt) places its
    planes by position.
    """

    study_instance_uid: str
    series_instance_uid: str
    frame_of_reference_uid: str
    modality: str
    images: tuple[SourceImage, ...]
    grid: np.ndarray
    shape: tuple[int, int, int]
    positions: np.ndarray = field(repr=False)

    def __post_init__(self) -> None:
        if not self.images:
            raise DicomInputError(f"series {self.series_instance_uid}: no source image")
        if np.shape(self.positions) != (len(self.images), 3):
            raise DicomInputError(
                f"series {self.series_instance_uid}: {len(self.images)} images but positions "
                f"of shape {np.shape(self.positions)}"
            )
        if not self.study_instance_uid or not self.series_instance_uid:
            raise DicomInputError("a source series needs its Study and Series Instance UIDs")

    @classmethod
    def of_volume(cls, volume: Volume) -> SourceSeries:
        """The series ``volume`` was read from."""
        return cls._of(
            volume.study_instance_uid,
            volume.series_instance_uid,
            volume.frame_of_reference_uid,
            volume.modality,
            volume.slices,
            volume.affine,
            volume.shape,
        )

    @classmethod
    def of_plan(cls, plan: VolumePlan) -> SourceSeries:
        """The series of a planned stack, from its headers (no pixel is decoded)."""
        header = plan.header
        study = str(header.get("StudyInstanceUID", "")).strip() or derived_study_uid(header)
        return cls._of(
            study,
            plan.stack.series_instance_uid,
            str(header.get("FrameOfReferenceUID", "")).strip(),
            plan.modality,
            plan.slices,
            plan.affine,
            plan.shape,
        )

    @classmethod
    def _of(
        cls,
        study: str,
        series: str,
        frame: str,
        modality: str,
        slices: Sequence[SliceRef],
        grid: np.ndarray,
        shape: tuple[int, int, int],
    ) -> SourceSeries:
        return cls(
            study_instance_uid=study,
            series_instance_uid=series,
            frame_of_reference_uid=series_frame_of_reference_uid(frame, series),
            modality=modality,
            images=tuple(
                SourceImage(s.sop_class_uid, s.sop_instance_uid, s.frame_number) for s in slices
            ),
            grid=np.asarray(grid, dtype=np.float64),
            shape=shape,
            positions=np.array([s.position for s in slices], dtype=np.float64).reshape(-1, 3),
        )

    def instances(self) -> list[tuple[str, str, list[int]]]:
        """Each instance once, in plane order: SOP Class, SOP Instance and its frames used."""
        frames: dict[tuple[str, str], list[int]] = {}
        for image in self.images:
            used = frames.setdefault((image.sop_class_uid, image.sop_instance_uid), [])
            if image.frame_number is not None:
                used.append(image.frame_number)
        return [(cls_uid, uid, used) for (cls_uid, uid), used in frames.items()]

    def plane_coordinates(self) -> np.ndarray:
        """The grid coordinate ``k`` of each image's plane (its index on a regular stack)."""
        points = np.c_[self.positions, np.ones(len(self.positions))]
        return (np.linalg.inv(self.grid) @ points.T)[2]


@dataclass(frozen=True, eq=False)
class Sources:
    """The series one result was made from: the primary (the result's grid) first.

    Raises
    ------
    DicomInputError
        If there is no series, one repeats, or they are not all of the primary's study (a
        multi-channel model takes its channels from one study).
    """

    series: tuple[SourceSeries, ...]
    _planes: dict[int, tuple[SourceImage, ...]] = field(
        default_factory=dict, init=False, repr=False
    )
    _index: dict[tuple[str, int | None], int] = field(default_factory=dict, init=False, repr=False)

    def __post_init__(self) -> None:
        if not self.series:
            raise DicomInputError("a result needs at least one source series")
        uids = [s.series_instance_uid for s in self.series]
        if len(set(uids)) != len(uids):
            raise DicomInputError(f"source series repeat: {', '.join(uids)}")
        study = self.primary.study_instance_uid
        for other in self.further:
            if other.study_instance_uid != study:
                raise DicomInputError(
                    f"series {other.series_instance_uid} is of study {other.study_instance_uid}, "
                    f"not of the primary series' study {study}; the channels of one result "
                    "come from one study"
                )

    @classmethod
    def of(cls, volume: Volume, further: Sequence[SourceSeries] = ()) -> Sources:
        """The sources of a result on ``volume``'s grid, with the series of further channels."""
        return cls((SourceSeries.of_volume(volume), *further))

    @property
    def primary(self) -> SourceSeries:
        """The series whose planes the result lies on."""
        return self.series[0]

    @property
    def further(self) -> tuple[SourceSeries, ...]:
        """The series of the further channels, resampled onto the primary's grid."""
        return self.series[1:]

    def planes_read(self, series: SourceSeries, first: int, stop: int) -> tuple[SourceImage, ...]:
        """The planes of ``series`` read to resample it onto primary planes ``first``..``stop-1``.

        The primary's planes are its own. A further series contributes every plane strictly
        less than one plane step away from where the primary's planes cut its grid, which are
        the planes linear interpolation weighs.
        """
        if series is self.primary:
            return self.primary.images[first:stop]
        ni, nj, _ = self.primary.shape
        corners = np.array(
            [[i, j, k, 1.0] for i in (0, ni - 1) for j in (0, nj - 1) for k in (first, stop - 1)]
        )
        to_series = np.linalg.inv(series.grid) @ self.primary.grid
        reach = (to_series @ corners.T)[2]
        low, high = float(reach.min()) - 1.0, float(reach.max()) + 1.0
        planes = series.plane_coordinates()
        return tuple(
            image
            for image, k in zip(series.images, planes, strict=True)
            if low + 1e-6 < k < high - 1e-6
        )

    def derivation_items(self, k: int) -> list[Dataset]:
        """Source Image Sequence items of the further series' planes read for primary plane k."""
        if k not in self._planes:
            self._planes[k] = tuple(
                image for other in self.further for image in self.planes_read(other, k, k + 1)
            )
        items = []
        for image in self._planes[k]:
            item = image.item()
            item.PurposeOfReferenceCodeSequence = [SOURCE_PURPOSE]
            item.SpatialLocationsPreserved = "NO"
            items.append(item)
        return items

    def primary_plane(self, sop_instance_uid: str, frame_number: int | None) -> int | None:
        """The primary plane ``k`` of an instance (and frame), or None when it is not one."""
        if not self._index:
            for k, image in enumerate(self.primary.images):
                self._index[(image.sop_instance_uid, image.frame_number)] = k
        return self._index.get((sop_instance_uid, frame_number))

    def referenced_series(self) -> list[Dataset]:
        """Referenced Series Sequence items (Common Instance Reference): each instance once."""
        items = []
        for source in self.series:
            series = Dataset()
            series.SeriesInstanceUID = source.series_instance_uid
            series.ReferencedInstanceSequence = [
                SourceImage(sop_class, sop_instance).item()
                for sop_class, sop_instance, _ in source.instances()
            ]
            items.append(series)
        return items

    def source_images(self) -> list[Dataset]:
        """Source Image Sequence items of a derived image: each instance of each series once."""
        return [
            SourceImage(sop_class, sop_instance).item()
            for source in self.series
            for sop_class, sop_instance, _ in source.instances()
        ]

    def instance_records(self) -> list[Dataset]:
        """One small header per instance (study, series, SOP class and instance UIDs).

        What highdicom takes as the evidence of an SR.
        """
        records = []
        for source in self.series:
            for sop_class, sop_instance, _ in source.instances():
                ds = Dataset()
                ds.StudyInstanceUID = source.study_instance_uid
                ds.SeriesInstanceUID = source.series_instance_uid
                ds.SOPClassUID = sop_class
                ds.SOPInstanceUID = sop_instance
                records.append(ds)
        return records

    def rt_referenced_frames(self) -> list[Dataset]:
        """Referenced Frame of Reference Sequence items: every series, each plane referenced."""
        frames: dict[str, list[SourceSeries]] = {}
        for source in self.series:
            frames.setdefault(source.frame_of_reference_uid, []).append(source)
        items = []
        for frame_uid, members in frames.items():
            study = Dataset()
            study.ReferencedSOPClassUID = STUDY_COMPONENT_SOP_CLASS
            study.ReferencedSOPInstanceUID = self.primary.study_instance_uid
            study.RTReferencedSeriesSequence = [_rt_series(s) for s in members]
            frame = Dataset()
            frame.FrameOfReferenceUID = frame_uid
            frame.RTReferencedStudySequence = [study]
            items.append(frame)
        return items

    def image_library(self) -> hd.sr.ContainerContentItem:
        """TID 1600 Image Library: one group per series (modality, frame of reference)."""
        library = hd.sr.ContainerContentItem(
            name=codes.DCM.ImageLibrary, relationship_type=hd.sr.RelationshipTypeValues.CONTAINS
        )
        library.ContentSequence = hd.sr.ContentSequence(
            [_library_group(source) for source in self.series]
        )
        return library

    def segmentation_sources(
        self, first: int, stop: int
    ) -> list[hd.sr.SourceImageForSegmentation] | hd.sr.SourceSeriesForSegmentation:
        """What a segment spanning primary planes ``first``..``stop - 1`` was derived from.

        One series: that series ("Source series for segmentation"). Several: the planes of each
        that the segment's planes read ("Source image for segmentation"), the primary's first.
        """
        if not self.further:
            return hd.sr.SourceSeriesForSegmentation(self.primary.series_instance_uid)
        images: list[hd.sr.SourceImageForSegmentation] = []
        for source in self.series:
            frames: dict[tuple[str, str], list[int]] = {}
            for image in self.planes_read(source, first, stop):
                used = frames.setdefault((image.sop_class_uid, image.sop_instance_uid), [])
                if image.frame_number is not None:
                    used.append(image.frame_number)
            images.extend(
                hd.sr.SourceImageForSegmentation(cls_uid, uid, used or None)
                for (cls_uid, uid), used in frames.items()
            )
        return images


def checked_sources(volume: Volume, sources: Sources | None) -> Sources:
    """``sources`` of a result on ``volume``'s grid, or ``volume``'s series alone when None.

    Raises
    ------
    DicomInputError
        If the primary of ``sources`` is not the series ``volume`` was read from.
    """
    if sources is None:
        return Sources.of(volume)
    primary = sources.primary
    if primary.series_instance_uid != volume.series_instance_uid or len(primary.images) != len(
        volume.slices
    ):
        raise DicomInputError(
            f"the result lies on series {volume.series_instance_uid} ({len(volume.slices)} "
            f"planes), but its first source is series {primary.series_instance_uid} "
            f"({len(primary.images)} planes); list the series the result lies on first"
        )
    return sources


def _rt_series(source: SourceSeries) -> Dataset:
    series = Dataset()
    series.SeriesInstanceUID = source.series_instance_uid
    series.ContourImageSequence = [image.item() for image in source.images]
    return series


def _library_group(source: SourceSeries) -> hd.sr.ContainerContentItem:
    """One Image Library Group: the series' shared descriptors, then one entry per instance."""
    acquisition = hd.sr.RelationshipTypeValues.HAS_ACQ_CONTEXT
    group = hd.sr.ContainerContentItem(
        name=codes.DCM.ImageLibraryGroup, relationship_type=hd.sr.RelationshipTypeValues.CONTAINS
    )
    items: list[hd.sr.ContentItem] = []
    modality = _MODALITIES.get(source.modality)
    if modality is not None:
        items.append(
            hd.sr.CodeContentItem(
                name=codes.DCM.Modality, value=modality, relationship_type=acquisition
            )
        )
    items.append(
        hd.sr.UIDRefContentItem(
            name=codes.DCM.FrameOfReferenceUID,
            value=source.frame_of_reference_uid,
            relationship_type=acquisition,
        )
    )
    for sop_class, sop_instance, frames in source.instances():
        items.append(
            hd.sr.ImageContentItem(
                name=_LIBRARY_ENTRY,
                referenced_sop_class_uid=sop_class,
                referenced_sop_instance_uid=sop_instance,
                referenced_frame_numbers=frames or None,
                relationship_type=hd.sr.RelationshipTypeValues.CONTAINS,
            )
        )
    group.ContentSequence = hd.sr.ContentSequence(items)
    return group
