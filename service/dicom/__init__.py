"""Reading DICOM: files, series, stacks and volumes.

The data flow is ``files`` (find and parse headers) → ``planes`` (one entry per image plane,
single- or multi-frame) → ``stacks`` (group by series and split into regular stacks) →
``volume`` (ordered pixels plus a voxel→patient affine).
"""

from service.dicom.volume import Volume, load_volumes, read_volume

__all__ = ["Volume", "load_volumes", "read_volume"]
