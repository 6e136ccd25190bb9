"""Whether an ONNX export computes its torch network's logits: the importer's acceptance rule.

float32 rounding does not scale with each output value but with the size of the values it is
computed from: a logit that crosses zero between two logits of ±1000 carries the rounding of the
±1000 terms it was summed from. A tolerance relative to each logit therefore refuses correct
exports of confident networks (logits of ±1000 are common after a high learning rate), while an
absolute one would accept anything of a network with large logits. The rule, on the same random
batch through both:

1. both outputs are finite and of the same shape;
2. every logit of output channel ``k`` agrees within ``PARITY_ATOL + PARITY_RTOL · S_k``, where
   ``S_k`` is the largest ``|logit|`` torch gives in that channel over the batch (the channel's
   scale; its final-layer weights set both it and its rounding);
3. the labels agree: argmax over the channels is the same at every voxel where torch's top-two
   margin exceeds the largest channel bound (a correct export differs only where two logits
   nearly tie).

Measured (``docs/models.md``, "ONNX parity"; ``bench/nnunet_parity.py``): correct exports differ
by at most 5.1e-6·S_k on nnU-Net's default 3D network and 2e-6·S_k on small trained ones, at any
logit scale, about torch's own float32 error against float64; wrong exports (a corrupted weight,
weights stored as float16, another activation slope or normalisation epsilon, a dropped node)
by 5.5e-4·S_k or more.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

#: Absolute floor of the bound, for channels whose logits are all near zero.
PARITY_ATOL = 1e-4
#: The bound's share of the channel's scale (largest |logit| of the channel).
PARITY_RTOL = 1e-4


@dataclass(frozen=True)
class ParityReport:
    """How the ONNX logits compare with torch's; ``problem`` None means the export is accepted.

    ``difference`` is the largest |onnx − torch| over the batch; ``channel`` the output channel
    closest to (or furthest beyond) its bound, with that channel's ``scale`` (largest |logit|),
    ``bound`` and largest difference ``channel_difference``. ``label_bound`` is the margin above
    which the labels must agree and ``label_mismatches`` the voxels where they do not.
    """

    difference: float
    channel: int
    channel_difference: float
    scale: float
    bound: float
    label_bound: float
    label_mismatches: int
    problem: str | None = None

    @property
    def accepted(self) -> bool:
        """Whether the export passed the rule."""
        return self.problem is None

    def summary(self) -> str:
        """The measured error and the bound, for a log line."""
        return (
            f"largest difference {self.difference:.2e}; channel {self.channel} "
            f"{self.channel_difference:.2e} against its bound {self.bound:.2e} "
            f"= {PARITY_ATOL:g} + {PARITY_RTOL:g} x {self.scale:.4g}"
        )


def channel_bounds(expected: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each output channel's scale ``S_k`` (largest |torch logit|) and bound (axis 1: channels)."""
    axes = tuple(a for a in range(expected.ndim) if a != 1)
    scales = np.abs(expected).max(axis=axes).astype(np.float64)
    return scales, PARITY_ATOL + PARITY_RTOL * scales


def _label_mismatches(expected: np.ndarray, got: np.ndarray, margin_bound: float) -> int:
    if expected.shape[1] < 2:
        return 0
    top_two = np.partition(expected, -2, axis=1)
    margin = np.take(top_two, -1, axis=1) - np.take(top_two, -2, axis=1)
    differ = expected.argmax(axis=1) != got.argmax(axis=1)
    return int(np.count_nonzero(differ & (margin > margin_bound)))


def _refusal(problem: str, scales: np.ndarray | None = None) -> ParityReport:
    scale = float(scales.max()) if scales is not None else np.nan
    bound = PARITY_ATOL + PARITY_RTOL * scale
    return ParityReport(np.inf, 0, np.inf, scale, bound, bound, 0, problem)


def compare_logits(expected: np.ndarray, got: np.ndarray) -> ParityReport:
    """Apply the rule to torch's logits ``expected`` and the ONNX model's ``got``.

    Both are ``[N, K, *spatial]``. The report's ``problem`` says why an export is refused (the
    measured error and the bound), or is None.

    Raises
    ------
    ValueError
        If ``expected`` is not ``[N, K, ...]`` or is empty.
    """
    if expected.ndim < 2 or expected.size == 0:
        raise ValueError(f"logits must be [N, K, ...] and not empty, got shape {expected.shape}")
    if got.shape != expected.shape:
        return _refusal(f"ONNX output shape {got.shape} differs from torch's {expected.shape}")
    if not np.isfinite(expected).all():
        return _refusal(
            "torch itself gives non-finite logits on a random N(0, 1) batch: the checkpoint's "
            "weights are broken"
        )
    scales, bounds = channel_bounds(expected)
    if not np.isfinite(got).all():
        count = int(np.count_nonzero(~np.isfinite(got)))
        return _refusal(
            f"the ONNX export gives {count} non-finite logit(s) where torch's are finite", scales
        )
    difference = np.abs(got.astype(np.float64) - expected.astype(np.float64))
    per_channel = difference.max(axis=tuple(a for a in range(expected.ndim) if a != 1))
    worst = int(np.argmax(per_channel / bounds))
    label_bound = float(bounds.max())
    report = ParityReport(
        difference=float(difference.max()),
        channel=worst,
        channel_difference=float(per_channel[worst]),
        scale=float(scales[worst]),
        bound=float(bounds[worst]),
        label_bound=label_bound,
        label_mismatches=_label_mismatches(expected, got, label_bound),
    )
    if report.channel_difference > report.bound:
        problem = (
            f"the ONNX export differs from torch by up to {report.channel_difference:.2e} in "
            f"output channel {worst}, beyond its bound {report.bound:.2e} = {PARITY_ATOL:g} + "
            f"{PARITY_RTOL:g} x {report.scale:.4g} (the channel's largest |logit|)"
        )
    elif report.label_mismatches:
        problem = (
            f"the ONNX export's labels (argmax over the channels) differ from torch's at "
            f"{report.label_mismatches} voxel(s) where torch's top-two margin exceeds "
            f"{label_bound:.2e}, the largest channel bound (largest logit difference "
            f"{report.difference:.2e})"
        )
    else:
        return report
    return replace(report, problem=problem)
