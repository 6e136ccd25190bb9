"""nnU-Net's environment variables: its data folders and its augmentation worker count.

nnU-Net reads ``nnUNet_raw``/``nnUNet_preprocessed``/``nnUNet_results`` (and
``nnUNet_n_proc_DA``) from the environment whenever it uses them, so every caller that plans,
preprocesses or trains sets them here, for a block, and gets the old values back after it.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

_PATH_VARIABLES = ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results")
#: nnU-Net's variable for augmentation worker processes (its spelling); "0" augments in-process.
N_PROC_DA = "nnUNet_n_proc_DA"


@contextmanager
def nnunet_folders(root: Path, extra: Mapping[str, str] | None = None) -> Iterator[Path]:
    """Point nnU-Net's folder variables (and ``extra`` variables) at ``root``'s sub-folders.

    nnU-Net reads ``nnUNet_raw``/``nnUNet_preprocessed``/``nnUNet_results`` from the
    environment when a path is used, so they are set for the block and restored after it. The
    process environment is shared: do not plan or train two federations in one process at once.
    """
    names = {name: str(root / name.removeprefix("nnUNet_")) for name in _PATH_VARIABLES}
    names |= dict(extra or {})
    before = {name: os.environ.get(name) for name in names}
    for name, value in names.items():
        if name in _PATH_VARIABLES:
            Path(value).mkdir(parents=True, exist_ok=True)
        os.environ[name] = value
    try:
        yield root
    finally:
        for name, previous in before.items():
            if previous is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = previous
