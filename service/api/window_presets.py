"""Window/level presets of the dashboard's viewer, per modality and unit.

CT gets the usual named windows in HU; PET in SUV gets fixed SUV ranges and one up to the
series' maximum; everything else (MR, PET that cannot be converted to SUV) gets an automatic
window over the bulk of its values. The first preset is the one the viewer opens with.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: The automatic window spans these percentiles of the series' values.
AUTO_PERCENTILES = (0.5, 99.5)
#: The automatic window is estimated on every n-th voxel along each axis (fast on big series).
AUTO_STRIDE = 2


@dataclass(frozen=True)
class WindowPreset:
    """A named window: values from ``low`` to ``high`` span black to white."""

    name: str
    low: float
    high: float

    def __post_init__(self) -> None:
        if not self.high > self.low:
            raise ValueError(f"window {self.name!r}: high {self.high} must exceed low {self.low}")

    @classmethod
    def centred(cls, name: str, width: float, level: float) -> WindowPreset:
        """A window given as width and level (centre), as CT windows are named."""
        return cls(name, level - width / 2, level + width / 2)

    @property
    def width(self) -> float:
        """Window width."""
        return self.high - self.low

    @property
    def level(self) -> float:
        """Window centre (level)."""
        return (self.high + self.low) / 2

    def as_dict(self) -> dict[str, object]:
        """Plain data for the viewer API."""
        return {"name": self.name, "low": self.low, "high": self.high}


CT_PRESETS = (
    WindowPreset.centred("Soft tissue W400 L40", 400, 40),
    WindowPreset.centred("Lung W1500 L-600", 1500, -600),
    WindowPreset.centred("Bone W2000 L300", 2000, 300),
    WindowPreset.centred("Brain W80 L40", 80, 40),
)


def _upper(high: float, low: float) -> float:
    """``high``, or a little above ``low`` when the values are flat."""
    return high if high > low else low + 1.0


def auto_window(values: np.ndarray, name: str = "Auto") -> WindowPreset:
    """A window over the bulk of ``values`` (their 0.5th to 99.5th percentile)."""
    sample = values[::AUTO_STRIDE, ::AUTO_STRIDE, ::AUTO_STRIDE]
    low, high = (float(v) for v in np.percentile(sample, AUTO_PERCENTILES))
    return WindowPreset(name, low, _upper(high, low))


def window_presets(modality: str, unit: str, values: np.ndarray) -> tuple[WindowPreset, ...]:
    """The presets for a series of ``modality`` whose ``values`` are in ``unit``.

    ``unit`` is ``HU`` for CT and ``SUV<type>`` (``SUVbw``...) for PET converted to SUV.
    """
    if modality == "CT" and unit == "HU":
        return CT_PRESETS
    maximum = float(values.max()) if values.size else 1.0
    if modality == "PT" and unit.startswith("SUV"):
        return (
            WindowPreset(f"{unit} 0-5", 0.0, 5.0),
            WindowPreset(f"{unit} 0-10", 0.0, 10.0),
            WindowPreset(f"{unit} 0-max ({maximum:.2f})", 0.0, _upper(maximum, 0.0)),
        )
    if modality == "PT":
        return (
            WindowPreset("0-max", 0.0, _upper(maximum, 0.0)),
            auto_window(values),
        )
    return (auto_window(values),)
