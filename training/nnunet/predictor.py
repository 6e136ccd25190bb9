"""nnU-Net's own predictor set up as fedseg compares against it: CPU, nnU-Net's defaults otherwise.

The parity tests and ``bench/bench_nnunet.py`` use this one set-up, so a comparison never differs
from another by a predictor option.
"""

from __future__ import annotations

from typing import Any


def cpu_predictor(use_mirroring: bool, tile_step_size: float = 0.5) -> Any:
    """An ``nnUNetPredictor`` on the CPU with Gaussian weighting, quiet, everything on the host."""
    import torch
    from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor

    return nnUNetPredictor(
        tile_step_size=tile_step_size,
        use_gaussian=True,
        use_mirroring=use_mirroring,
        perform_everything_on_device=False,
        device=torch.device("cpu"),
        verbose=False,
        verbose_preprocessing=False,
        allow_tqdm=False,
    )
