"""``fedseg measure --image DIR --mask PATH [--suv-type TYPE] [--json]``: measures per ROI.

For PET the image is converted to SUV and each ROI or segment gets SUVmax/mean/median/peak,
MTV, TLG and its lesions; for any modality each region also gets volume, mean and standard
deviation (HU for CT).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from service.config import get_settings
from service.dicom.volume import Volume, load_volumes
from service.errors import DicomInputError
from service.masks import load_regions
from service.organ_stats import organ_statistics
from service.pet.body_size import SuvType
from service.pet.measures import Connectivity, measure_regions
from service.pet.suv import to_suv
from service.qc.report import check_volume
from service.results.crops import region_crops


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``measure`` subcommand."""
    parser = subparsers.add_parser(
        "measure",
        help="SUVmax/mean/median/peak, MTV, TLG (PET) and volume/mean/std per ROI or segment",
        description="Measure an image inside each region of a DICOM-SEG, RTSTRUCT or NIfTI mask.",
    )
    parser.add_argument("--image", required=True, type=Path, help="DICOM image folder or file")
    parser.add_argument(
        "--mask", required=True, type=Path, help="DICOM-SEG, RTSTRUCT or NIfTI label map"
    )
    parser.add_argument(
        "--suv-type",
        choices=[t.value for t in SuvType],
        default=SuvType.BW.value,
        help="SUV normalisation for PET (default: body weight)",
    )
    parser.add_argument(
        "--connectivity",
        type=int,
        choices=[c.value for c in Connectivity],
        default=Connectivity.FACE_EDGE_VERTEX.value,
        help="neighbours that join voxels into one lesion (default 26)",
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of text")
    parser.set_defaults(handler=run)


def select_volume(paths: Path) -> Volume:
    """The one PET volume under ``paths``, or else the only volume there."""
    volumes = load_volumes(paths, get_settings())
    pets = [v for v in volumes if v.modality == "PT"]
    if len(pets) == 1:
        return pets[0]
    if len(volumes) == 1:
        return volumes[0]
    listed = "; ".join(f"{v.modality} {v.series_instance_uid}" for v in volumes[:5])
    raise DicomInputError(
        f"{paths}: {len(volumes)} volumes found ({listed}); pass a folder holding one series"
    )


def measure(
    image: Path, mask: Path, suv_type: SuvType, connectivity: Connectivity
) -> dict[str, object]:
    """All measures of ``image`` inside each region of ``mask``, as plain data."""
    volume = select_volume(image)
    regions = load_regions(mask, volume)
    masks = {region.name: region.mask for region in regions.regions}
    result: dict[str, object] = {
        "image": {
            "modality": volume.modality,
            "series_instance_uid": volume.series_instance_uid,
            "shape": list(volume.shape),
            "spacing_mm": [round(s, 4) for s in volume.spacing],
        },
        "mask": {"path": str(mask), "regions": len(regions.regions), "warnings": regions.warnings},
        "suv": None,
        "pet": [],
    }
    values = volume.array
    if volume.modality == "PT":
        values, conversion = to_suv(volume, suv_type)
        result["suv"] = conversion.describe()
        pet = measure_regions(values, volume.affine, masks, connectivity, suv_type)
        result["pet"] = [m.as_dict() for m in pet]
    stats = organ_statistics(values, volume.affine, masks)
    result["statistics"] = [s.as_dict() for s in stats]
    crops = list(region_crops(regions, volume, None))
    result["qc"] = check_volume(volume, crops, get_settings().qc_policy).as_dict()
    return result


def run(args: argparse.Namespace) -> int:
    """Print the measures of every region."""
    result = measure(args.image, args.mask, SuvType(args.suv_type), Connectivity(args.connectivity))
    if args.json:
        json.dump(result, sys.stdout, indent=2)
        print()
    else:
        _print_text(result)
    return 0


def _fmt(value: object) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _print_text(result: dict[str, object]) -> None:
    image = result["image"]
    print(f"{image['modality']} {image['series_instance_uid']}")  # type: ignore[index]
    suv = result["suv"]
    if isinstance(suv, dict):
        print(f"SUV{suv['suv_type']} factor {_fmt(suv['factor'])} ({suv['method']})")
        for warning in suv["warnings"]:
            print(f"  warning: {warning}")
    for region in result["pet"]:  # type: ignore[attr-defined]
        keys = ("suv_max", "suv_mean", "suv_median", "suv_peak_local", "suv_peak_global")
        shown = ", ".join(f"{k} {_fmt(region[k])}" for k in keys)
        print(
            f"{region['name']}: {region['lesion_count']} lesion(s), {shown}, "
            f"MTV {_fmt(region['mtv_ml'])} mL, TLG {_fmt(region['tlg'])}"
        )
    for structure in result["qc"]["structures"]:  # type: ignore[index]
        reasons = "; ".join(structure["reasons"])
        print(
            f"QC {structure['status'].upper():<4} {structure['name']}"
            + (f": {reasons}" if reasons else "")
        )
    for stat in result["statistics"]:  # type: ignore[attr-defined]
        print(
            f"{stat['name']}: volume {_fmt(stat['volume_ml'])} mL, mean {_fmt(stat['mean'])}, "
            f"std {_fmt(stat['std'])}"
        )
