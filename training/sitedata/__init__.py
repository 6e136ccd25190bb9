"""A centre's own DICOM with RTSTRUCT/SEG as training cases: ``fedseg dataset build``.

Torch-free: it runs on the service's readers and writers, so a centre can build and check its
data before installing the training stack.
"""

from training.sitedata.build import BuildOptions, BuildResult, SiteFormat, build_site
from training.sitedata.layout import CaseRecord, SiteIndex, is_site_folder

__all__ = [
    "BuildOptions",
    "BuildResult",
    "CaseRecord",
    "SiteFormat",
    "SiteIndex",
    "build_site",
    "is_site_folder",
]
