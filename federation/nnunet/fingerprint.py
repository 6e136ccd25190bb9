"""The federated nnU-Net fingerprint: per-site histograms and sums, pooled exactly on the server.

nnU-Net plans from the foreground intensity statistics of the pooled cases (mean, sd, median,
0.5th and 99.5th percentiles, min, max per channel), their spacings, their shapes after
cropping and the median relative size after cropping. A site sends, for its cases together:

- per channel, a histogram of the sampled foreground intensities in bins of a fixed width
  ``w`` (bin ``b`` holds values in ``[b w, (b + 1) w)``; only non-empty bins travel), the
  sample count, mean and sum of squared deviations, and the minimum and maximum;
- histograms of the spacings (bins of ``spacing_bin`` mm per axis, jointly), of the shapes
  after cropping (``shape_bin`` voxels), of the (spacing, shape) pairs, and of the relative
  sizes (``relative_bin``).

No per-case value leaves a site. The server merges the histograms by adding counts, and the
means and squared deviations with Chan et al.'s pairwise update, so:

- mean and sd equal those of the pooled samples up to floating-point rounding;
- min and max are exact;
- a percentile is within ``w / 2`` of nnU-Net's linear-interpolated percentile of the pooled
  samples (each order statistic is estimated by its bin's centre, clipped to [min, max]);
- spacings within ``spacing_bin / 2``, shapes within ``shape_bin / 2`` and the relative size
  within ``relative_bin / 2`` of the pooled cases' values.

With the sites' samples drawn as nnU-Net draws them for the pooled dataset
(:func:`training.nnunet.fingerprint.samples_per_case` of the pooled case count), the pooled
fingerprint is nnU-Net's own fingerprint of the pooled data within those bounds.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

#: nnU-Net's fingerprint percentiles.
PERCENTILES = {"percentile_00_5": 0.5, "median": 50.0, "percentile_99_5": 99.5}


@dataclass(frozen=True)
class FingerprintBins:
    """Bin widths of a federated fingerprint (the stated error bounds are half of each)."""

    #: Intensity bin width, in the image's units (HU for CT).
    intensity: float = 0.1
    #: Spacing bin width, in mm.
    spacing: float = 1e-3
    #: Shape-after-crop bin width, in voxels (1: exact shapes).
    shape: int = 1
    #: Relative-size-after-cropping bin width.
    relative: float = 1e-4

    def __post_init__(self) -> None:
        if min(self.intensity, self.spacing, self.relative) <= 0 or self.shape < 1:
            raise ValueError(f"bin widths must be positive: {self}")


@dataclass(frozen=True)
class ChannelSummary:
    """Histogram and moments of one channel's sampled foreground intensities."""

    bin_width: float
    #: Non-empty bins: bin index -> number of samples.
    histogram: Mapping[int, int]
    count: int
    mean: float
    #: Sum of squared deviations from ``mean``.
    m2: float
    minimum: float
    maximum: float

    @classmethod
    def of(cls, values: np.ndarray, bin_width: float) -> ChannelSummary:
        """Summarise samples (at least one).

        Raises
        ------
        ValueError
            If ``values`` is empty.
        """
        values = np.asarray(values, dtype=np.float64).ravel()
        if values.size == 0:
            raise ValueError("a channel summary needs at least one foreground sample")
        bins, counts = np.unique(np.floor(values / bin_width).astype(np.int64), return_counts=True)
        mean = float(values.mean())
        return cls(
            bin_width=bin_width,
            histogram=dict(zip(bins.tolist(), counts.tolist(), strict=True)),
            count=int(values.size),
            mean=mean,
            m2=float(np.sum((values - mean) ** 2)),
            minimum=float(values.min()),
            maximum=float(values.max()),
        )

    def merge(self, other: ChannelSummary) -> ChannelSummary:
        """The summary of both sample sets (Chan et al.'s update for mean and squared deviations).

        Raises
        ------
        ValueError
            If the bin widths differ.
        """
        if self.bin_width != other.bin_width:
            raise ValueError(f"bin widths differ: {self.bin_width} and {other.bin_width}")
        count = self.count + other.count
        delta = other.mean - self.mean
        histogram = Counter(self.histogram)
        histogram.update(other.histogram)
        return ChannelSummary(
            bin_width=self.bin_width,
            histogram=dict(histogram),
            count=count,
            mean=self.mean + delta * other.count / count,
            m2=self.m2 + other.m2 + delta * delta * self.count * other.count / count,
            minimum=min(self.minimum, other.minimum),
            maximum=max(self.maximum, other.maximum),
        )

    @property
    def std(self) -> float:
        """Population standard deviation (numpy's default, as nnU-Net uses)."""
        return math.sqrt(self.m2 / self.count)

    def percentile(self, q: float) -> float:
        """nnU-Net's (numpy's linear) ``q``-th percentile, within ``bin_width / 2``."""
        if not 0 <= q <= 100:
            raise ValueError(f"percentile must lie in [0, 100], got {q}")
        rank = q / 100 * (self.count - 1)
        low = math.floor(rank)
        bins = np.array(sorted(self.histogram), dtype=np.int64)
        ends = np.cumsum([self.histogram[int(b)] for b in bins])

        def order_statistic(k: int) -> float:
            if k == 0:
                return self.minimum
            if k == self.count - 1:
                return self.maximum
            b = bins[int(np.searchsorted(ends, k, side="right"))]
            centre = (float(b) + 0.5) * self.bin_width
            return min(max(centre, self.minimum), self.maximum)

        lower = order_statistic(low)
        if low == rank:
            return lower
        return lower + (rank - low) * (order_statistic(low + 1) - lower)

    def nnunet_properties(self) -> dict[str, float]:
        """nnU-Net's ``foreground_intensity_properties_per_channel`` entry."""
        properties = {
            "mean": self.mean,
            "std": self.std,
            "min": self.minimum,
            "max": self.maximum,
        }
        properties |= {name: self.percentile(q) for name, q in PERCENTILES.items()}
        return properties

    def as_json(self) -> dict[str, object]:
        """JSON-ready form (what a site sends)."""
        return {
            "bin_width": self.bin_width,
            "bins": list(self.histogram),
            "counts": list(self.histogram.values()),
            "count": self.count,
            "mean": self.mean,
            "m2": self.m2,
            "min": self.minimum,
            "max": self.maximum,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, object]) -> ChannelSummary:
        """Inverse of :meth:`as_json`."""
        bins = [int(b) for b in data["bins"]]  # type: ignore[attr-defined]
        counts = [int(c) for c in data["counts"]]  # type: ignore[attr-defined]
        return cls(
            bin_width=float(data["bin_width"]),  # type: ignore[arg-type]
            histogram=dict(zip(bins, counts, strict=True)),
            count=int(data["count"]),  # type: ignore[call-overload]
            mean=float(data["mean"]),  # type: ignore[arg-type]
            m2=float(data["m2"]),  # type: ignore[arg-type]
            minimum=float(data["min"]),  # type: ignore[arg-type]
            maximum=float(data["max"]),  # type: ignore[arg-type]
        )


def _binned(values: Sequence[float], width: float) -> tuple[int, ...]:
    return tuple(math.floor(v / width) for v in values)


@dataclass(frozen=True)
class SiteFingerprint:
    """What one site (or, merged, the federation) contributes to the fingerprint."""

    bins: FingerprintBins
    cases: int
    channels: tuple[ChannelSummary, ...]
    #: Joint spacing bins (one index per axis) -> cases.
    spacings: Mapping[tuple[int, ...], int] = field(default_factory=dict)
    #: Joint shape-after-crop bins -> cases.
    shapes: Mapping[tuple[int, ...], int] = field(default_factory=dict)
    #: Relative-size-after-cropping bin -> cases.
    relative_sizes: Mapping[int, int] = field(default_factory=dict)
    #: Joint (spacing bins, shape bins) -> cases: nnU-Net's planner resamples each case's
    #: shape with that case's spacing, so it needs the pairs, not only the two marginals.
    geometry: Mapping[tuple[int, ...], int] = field(default_factory=dict)

    @classmethod
    def of_cases(
        cls,
        cases: Iterable[tuple[Sequence[float], Sequence[int], float, Sequence[np.ndarray]]],
        bins: FingerprintBins,
    ) -> SiteFingerprint:
        """Summarise cases given as (spacing, shape after crop, relative size, samples).

        Raises
        ------
        ValueError
            If there is no case, the channel counts differ, or a channel has no sample.
        """
        spacings: Counter[tuple[int, ...]] = Counter()
        shapes: Counter[tuple[int, ...]] = Counter()
        relative: Counter[int] = Counter()
        geometry: Counter[tuple[int, ...]] = Counter()
        samples: list[list[np.ndarray]] = []
        count = 0
        for spacing, shape, size, intensities in cases:
            if samples and len(intensities) != len(samples):
                raise ValueError(f"cases have {len(samples)} and {len(intensities)} channels")
            samples = samples or [[] for _ in intensities]
            for channel, values in zip(samples, intensities, strict=True):
                channel.append(np.asarray(values, dtype=np.float64))
            spacing_bins = _binned(spacing, bins.spacing)
            shape_bins = _binned([float(s) for s in shape], float(bins.shape))
            spacings[spacing_bins] += 1
            shapes[shape_bins] += 1
            geometry[spacing_bins + shape_bins] += 1
            relative[math.floor(size / bins.relative)] += 1
            count += 1
        if not count:
            raise ValueError("a site fingerprint needs at least one case")
        channels = tuple(ChannelSummary.of(np.concatenate(c), bins.intensity) for c in samples)
        return cls(
            bins, count, channels, dict(spacings), dict(shapes), dict(relative), dict(geometry)
        )

    def merge(self, other: SiteFingerprint) -> SiteFingerprint:
        """Both sites' cases together.

        Raises
        ------
        ValueError
            If the bins or the channel counts differ.
        """
        if self.bins != other.bins:
            raise ValueError(f"sites used different bins: {self.bins} and {other.bins}")
        if len(self.channels) != len(other.channels):
            raise ValueError(f"sites have {len(self.channels)} and {len(other.channels)} channels")
        return SiteFingerprint(
            self.bins,
            self.cases + other.cases,
            tuple(a.merge(b) for a, b in zip(self.channels, other.channels, strict=True)),
            dict(Counter(self.spacings) + Counter(other.spacings)),
            dict(Counter(self.shapes) + Counter(other.shapes)),
            dict(Counter(self.relative_sizes) + Counter(other.relative_sizes)),
            dict(Counter(self.geometry) + Counter(other.geometry)),
        )

    def as_json(self) -> dict[str, object]:
        """JSON-ready form: what a site sends (histograms and sums, no per-case value)."""
        return {
            "bins": {
                "intensity": self.bins.intensity,
                "spacing": self.bins.spacing,
                "shape": self.bins.shape,
                "relative": self.bins.relative,
            },
            "cases": self.cases,
            "channels": [c.as_json() for c in self.channels],
            "spacings": [[list(k), n] for k, n in self.spacings.items()],
            "shapes": [[list(k), n] for k, n in self.shapes.items()],
            "relative_sizes": [[k, n] for k, n in self.relative_sizes.items()],
            "geometry": [[list(k), n] for k, n in self.geometry.items()],
        }

    @classmethod
    def from_json(cls, data: Mapping[str, object]) -> SiteFingerprint:
        """Inverse of :meth:`as_json`."""
        bins = data["bins"]
        assert isinstance(bins, Mapping)
        return cls(
            bins=FingerprintBins(
                float(bins["intensity"]),
                float(bins["spacing"]),
                int(bins["shape"]),
                float(bins["relative"]),
            ),
            cases=int(data["cases"]),  # type: ignore[call-overload]
            channels=tuple(ChannelSummary.from_json(c) for c in data["channels"]),  # type: ignore[attr-defined]
            spacings={tuple(k): int(n) for k, n in data["spacings"]},  # type: ignore[attr-defined]
            shapes={tuple(k): int(n) for k, n in data["shapes"]},  # type: ignore[attr-defined]
            relative_sizes={int(k): int(n) for k, n in data["relative_sizes"]},  # type: ignore[attr-defined]
            geometry={tuple(k): int(n) for k, n in data.get("geometry", [])},  # type: ignore[attr-defined]
        )

    def nnunet_fingerprint(self) -> dict[str, object]:
        """The fingerprint in nnU-Net's ``dataset_fingerprint.json`` form, for its planner.

        Spacings and shapes are listed once per case at their bin centres (shapes rounded to
        whole voxels), as (spacing, shape) pairs from the joint histogram: the planner uses
        their distribution and resamples each shape with its own spacing. Without the joint
        histogram (a fingerprint from before it), the marginals are listed in sorted order.
        """
        spacing_width, shape_width = self.bins.spacing, self.bins.shape

        def spacing_of(key: Sequence[int]) -> list[float]:
            return [(b + 0.5) * spacing_width for b in key]

        def shape_of(key: Sequence[int]) -> list[int]:
            return [round((b + 0.5) * shape_width - 0.5) for b in key]

        if self.geometry:
            pairs = [
                (spacing_of(key[: len(key) // 2]), shape_of(key[len(key) // 2 :]))
                for key in sorted(self.geometry)
                for _ in range(self.geometry[key])
            ]
            spacings = [p[0] for p in pairs]
            shapes = [p[1] for p in pairs]
        else:
            spacings = [
                spacing_of(key) for key in sorted(self.spacings) for _ in range(self.spacings[key])
            ]
            shapes = [shape_of(key) for key in sorted(self.shapes) for _ in range(self.shapes[key])]
        # A relative size is at most 1 (nothing cropped): the bin of 1 is clipped to it.
        sizes = np.repeat(
            [min((b + 0.5) * self.bins.relative, 1.0) for b in sorted(self.relative_sizes)],
            [self.relative_sizes[b] for b in sorted(self.relative_sizes)],
        )
        return {
            "spacings": spacings,
            "shapes_after_crop": shapes,
            "foreground_intensity_properties_per_channel": {
                str(i): c.nnunet_properties() for i, c in enumerate(self.channels)
            },
            "median_relative_size_after_cropping": float(np.median(sizes)),
        }


def pool(sites: Sequence[SiteFingerprint]) -> SiteFingerprint:
    """The federation's fingerprint from every site's.

    Raises
    ------
    ValueError
        If no site is given, or the sites' bins or channels differ.
    """
    if not sites:
        raise ValueError("pooling needs at least one site fingerprint")
    pooled = sites[0]
    for site in sites[1:]:
        pooled = pooled.merge(site)
    return pooled


def site_fingerprint(
    folder: Path, pooled_cases: int, bins: FingerprintBins | None = None
) -> SiteFingerprint:
    """A site's fingerprint of its nnU-Net dataset folder (``dataset build --format nnunet``).

    ``pooled_cases`` is the number of cases of all sites together (the server asks for it
    first): nnU-Net divides its foreground samples over the pooled dataset, so each site draws
    as many per case as nnU-Net would from the pooled data.
    """
    from training.nnunet.fingerprint import samples_per_case

    per_case = samples_per_case(pooled_cases)
    return site_fingerprint_of(folder, per_case, bins)


def site_fingerprint_of(
    folder: Path, per_case_samples: int, bins: FingerprintBins | None = None
) -> SiteFingerprint:
    """:func:`site_fingerprint` with an explicit per-case sample count."""
    from training.nnunet.fingerprint import analyse_cases

    cases = (
        (c.spacing, c.shape_after_crop, c.relative_size_after_cropping, c.intensities)
        for c in analyse_cases(folder, per_case_samples)
    )
    return SiteFingerprint.of_cases(cases, bins or FingerprintBins())
