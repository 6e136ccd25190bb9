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
        description=(
            "Measure an image inside each region of a DICOM-SEG, RTSTRUCT or NIfTI mask. "
            "Regions are told apart by segment or ROI number, so segments that share a label "
            "are reported separately. For PET: SUVpeak is the mean SUV in a 1 mL sphere; "
            "suv_peak_local centres it on the hottest voxel, suv_peak_global takes the highest "
            "such mean anywhere in the region."
        ),
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
    result: dict[str, object] = {
        "image": {
            "modality": volume.modality,
            "series_instance_uid": volume.series_instance_uid,
            "shape": list(volume.shape),
            "spacing_mm": [round(s, 4) for s in volume.spacing],
        },
        "mask": {
            "path": str(mask),
            "regions": len(regions.regions),
            "warnings": regions.warnings,
            "refused": {str(number): why for number, why in regions.refused.items()},
        },
        "suv": None,
        "pet": [],
    }
    values = volume.array
    if volume.modality == "PT":
        values, conversion = to_suv(volume, suv_type)
        result["suv"] = conversion.describe()
        pet = measure_regions(values, volume.affine, regions, connectivity, suv_type)
        result["pet"] = [m.as_dict() for m in pet]
    stats = organ_statistics(values, volume.affine, regions)
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


def _fmt(value: object, digits: int = 4) -> str:
    return f"{value:.{digits}g}" if isinstance(value, float) else str(value)


_UNITS = {"CT": "HU", "PT": "SUV", "MR": "(MR units)"}
PEAK_NOTE = (
    "SUVpeak: the mean SUV in a 1 mL sphere (radius 6.2 mm, partial voxels weighted); "
    "local = sphere centred on the hottest voxel, global = the highest such mean centred "
    "anywhere in the ROI (IBSI). TLG = SUVmean x MTV."
)


def _print_text(result: dict[str, object]) -> None:
    """One block per ROI (volume and intensities with units; SUV measures for PET)."""
    image = result["image"]
    modality = str(image["modality"])  # type: ignore[index]
    print(f"{modality} {image['series_instance_uid']}")  # type: ignore[index]
    for warning in result["mask"]["warnings"]:  # type: ignore[index]
        print(f"mask warning: {warning}")
    suv = result["suv"]
    unit = _UNITS.get(modality, "")
    if isinstance(suv, dict):
        unit = f"SUV{suv['suv_type']} ({suv['suv_unit']})"
        factor = suv["factor"] if suv["factor"] is not None else "per plane"
        print(f"{unit} = value x {_fmt(factor, 6)}: {suv['method']}")
        for warning in suv["warnings"]:
            print(f"  warning: {warning}")
    pet = {region["number"]: region for region in result["pet"]}  # type: ignore[attr-defined]
    verdicts = {s["number"]: s for s in result["qc"]["structures"]}  # type: ignore[index]
    for stat in result["statistics"]:  # type: ignore[attr-defined]
        print(
            f"ROI {stat['number']} {stat['name']}: {_fmt(stat['volume_ml'])} mL "
            f"({stat['voxel_count']} voxels), mean {_fmt(stat['mean'])} ± {_fmt(stat['std'])}, "
            f"min {_fmt(stat['min'])}, max {_fmt(stat['max'])} {unit}"
        )
        verdict = verdicts.get(stat["number"])
        if verdict is not None:
            reasons = "; ".join(verdict["reasons"])
            print(f"  QC {verdict['status'].upper()}" + (f": {reasons}" if reasons else ""))
        region = pet.get(stat["number"])
        if region is not None and region["suv_max"] is not None:
            tlg_unit = "g" if region["suv_unit"] == "g/mL" else "cm2"
            print(
                f"  SUVmax {_fmt(region['suv_max'])}, SUVmean {_fmt(region['suv_mean'])}, "
                f"SUVmedian {_fmt(region['suv_median'])}, SUVpeak local "
                f"{_fmt(region['suv_peak_local'])} / global {_fmt(region['suv_peak_global'])} "
                f"({region['suv_unit']}); MTV {_fmt(region['mtv_ml'])} mL, "
                f"TLG {_fmt(region['tlg'])} {tlg_unit}; {region['lesion_count']} lesion(s)"
            )
    if pet:
        print(PEAK_NOTE)
