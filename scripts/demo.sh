#!/usr/bin/env bash
# `make demo`: the main job on embedded defaults, from DICOM in to results out.
# Grows with the project: each stage runs when the command behind it is installed.
set -euo pipefail
out="${FEDSEG_DEMO_OUT:-demo-out}"
rm -rf "$out"; mkdir -p "$out"
has() { fedseg --help 2>/dev/null | grep -qE "^    $1 +[^(]"; }

echo "== 1. synthetic multi-site phantoms (2 sites, seed 7)"
if has phantoms; then
  fedseg phantoms --out "$out/phantoms" --sites 2 --cases-per-site 1 --seed 7
  echo "== 2. what the reader finds in them"
  fedseg inspect "$out/phantoms"
fi

data="${FEDSEG_DATA:-../shared/data}"
if [ -d "$data" ]; then
  echo "== 3. real DICOM: raw GE PET, oblique Siemens MR, gantry-tilted GE CT"
  fedseg inspect "$data/sts001-raw" "$data/ct-gantry-tilt-ge/In/GE" || true
  if has suv; then
    echo "== 4. SUV conversion of the raw PET"
    fedseg suv "$data/sts001-raw/FDG_PET/image"
  fi
  if has measure; then
    echo "== 5. lesion measures inside the planner's GTV"
    fedseg measure --image "$data/sts001-raw/FDG_PET/image" --mask "$data/sts001-raw/FDG_PET/mask"
  fi
  if has convert; then
    echo "== 6. the GTV as DICOM-SEG, RTSTRUCT and TID 1500 SR"
    fedseg convert --image "$data/sts001-raw/FDG_PET/image" --mask "$data/sts001-raw/FDG_PET/mask" \
      --out "$out/results" --task pet-lesion
    ls -l "$out/results"
  fi
else
  echo "(no real data at $data; set FEDSEG_DATA to run stages 3-6)"
fi
echo "demo outputs are in $out/"
