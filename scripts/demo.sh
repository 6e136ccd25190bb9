#!/usr/bin/env bash
# `make demo`: the main job on embedded defaults, DICOM in → DICOM-SEG / RTSTRUCT / SR out.
#  1. a small multi-site phantom dataset (synthetic CT/PET/MR with ground truth);
#  2. what the reader finds in real DICOM (raw GE PET, oblique MR, gantry-tilted CT);
#  3. SUV conversion and lesion measures of the raw PET inside the planner's GTV;
#  4. `fedseg segment` of a real PET crop with the shipped pet-lesion model;
#  4b. quality control: the phantom-trained ct-organs on a real body CT (flagged result, withheld
#     structures) and on a thigh CT (outside its intended use, skipped);
#  5. the clinical server: `fedseg serve` receives a phantom CT and the raw PET by STOW-RS,
#     segments them with the shipped models, prints the measurements and the dashboard and OHIF
#     addresses, and serves until Ctrl-C (on a terminal; FEDSEG_DEMO_WAIT=0 or no terminal: stops).
set -euo pipefail
cd "$(dirname "$0")/.."
out="${FEDSEG_DEMO_OUT:-demo-out}"
data="${FEDSEG_DATA:-../shared/data}"
rm -rf "$out"; mkdir -p "$out"

echo "== 1. synthetic multi-site phantoms (2 sites, seed 7)"
fedseg phantoms --out "$out/phantoms" --sites 2 --cases-per-site 1 --seed 7
fedseg inspect "$out/phantoms"

if [ ! -d "$data" ]; then
  echo "(no real data at $data: set FEDSEG_DATA to run stages 2-5)"; exit 0
fi
echo "== 2. real DICOM: raw GE PET, oblique Siemens MR, gantry-tilted GE CT"
fedseg inspect "$data/sts001-raw" "$data/ct-gantry-tilt-ge/In/GE"

echo "== 3. SUV of the raw PET, and the measures inside the planner's GTV"
fedseg suv "$data/sts001-raw/FDG_PET/image"
fedseg measure --image "$data/sts001-raw/FDG_PET/image" --mask "$data/sts001-raw/FDG_PET/mask"

if [ -d models/pet-lesion ]; then
  echo "== 4. fedseg segment: a real sarcoma PET (STS_003) with the shipped pet-lesion model"
  fedseg segment "$data/sts-pet/ibsi_validation/dicom/STS_003/PET/image" --out "$out/segment-sts003" \
    --model pet-lesion
fi

if [ -d models/ct-organs ]; then
  echo "== 4b. QC: the phantom-trained ct-organs on a real body CT and on a thigh CT"
  echo "   (structures that fail QC are withheld from SEG/RTSTRUCT and listed in the SR)"
  fedseg segment "$data/ct-totalseg-example/tests/reference_files/example_ct_dicom" \
    --out "$out/qc-body-ct" --model ct-organs
  fedseg segment "$data/ibsi-sts001-multimodal/ibsi_validation/dicom/STS_001/CT/image" \
    --out "$out/qc-thigh-ct" --model ct-organs
fi

echo "demo outputs so far are in $out/"
echo "== 5. the clinical server on embedded defaults (dashboard and OHIF viewer; Ctrl-C stops it)"
bash scripts/demo_service.sh "$@"
