#!/usr/bin/env bash
# The clinical server on embedded defaults: start `fedseg serve` (SQLite, temporary state folder,
# the models shipped in models/), send a phantom CT study and the real raw PET sts001 by STOW-RS,
# wait for the jobs, print the measurements and what to open (dashboard, OHIF viewer), then
# keep serving until Ctrl-C.
# Usage: scripts/demo_service.sh [--no-wait | --keep]
#   (default) on a terminal, serve until Ctrl-C; without one (CI, scripts), stop at the end
#   --no-wait stop at the end even on a terminal;  --keep leave the server running, detached
# FEDSEG_DEMO_WAIT=0|1 overrides the terminal check. Needs `fedseg` and its Python on PATH (make
# demo does that). Loopback only.
set -euo pipefail
keep=0
wait_for_user="${FEDSEG_DEMO_WAIT:-}"
case "${1:-}" in
  --keep) keep=1; wait_for_user=0 ;;
  --no-wait) wait_for_user=0 ;;
  "") ;;
  *) echo "usage: $0 [--no-wait | --keep]" >&2; exit 2 ;;
esac
if [ -z "$wait_for_user" ]; then
  if [ -t 0 ] && [ -t 1 ]; then wait_for_user=1; else wait_for_user=0; fi
fi
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
data="${FEDSEG_DATA:-$repo/../shared/data}"
port="${FEDSEG_DEMO_PORT:-8042}"
if ! python -c "import socket,sys; s=socket.socket(); s.bind(('127.0.0.1', int(sys.argv[1])))" "$port" 2>/dev/null; then
  [ -n "${FEDSEG_DEMO_PORT:-}" ] && { echo "port $port (FEDSEG_DEMO_PORT) is in use"; exit 1; }
  port="$(python -c "import socket; s=socket.socket(); s.bind(('127.0.0.1', 0)); print(s.getsockname()[1])")"
  echo "   port 8042 is in use: serving on $port instead"
fi
work="$(mktemp -d "${TMPDIR:-/tmp}/fedseg-demo-XXXXXX")"
export FEDSEG_STATE_DIR="$work/state" FEDSEG_MODEL_STORE="$work/models"
shipped="${FEDSEG_SHIPPED_MODELS:-$repo/models}"
export FEDSEG_SHIPPED_MODELS="$shipped" FEDSEG_API_HOST=127.0.0.1 FEDSEG_DICOM_PORT=0
export FEDSEG_QUIET_PERIOD_S=3600 FEDSEG_WORKER_POLL_S=0.5 PYTHONPATH="$repo${PYTHONPATH:+:$PYTHONPATH}"
url="http://127.0.0.1:$port"

server=""
stop() {
  if [ -n "$server" ] && kill -0 "$server" 2>/dev/null; then
    kill -TERM "$server"; wait "$server" 2>/dev/null || true
  fi
}
if [ "$keep" = 0 ]; then trap stop EXIT; fi

echo "== service demo: state in $work"
fedseg token create demo-sender --role sender >"$work/sender.token"
fedseg token create demo-reader --role reader >"$work/reader.token"
fedseg serve --port "$port" >"$work/serve.log" 2>&1 &
server=$!
for _ in $(seq 1 120); do
  curl -fsS "$url/healthz" >/dev/null 2>&1 && break
  kill -0 "$server" 2>/dev/null || { echo "fedseg serve exited; see $work/serve.log"; exit 1; }
  sleep 0.5
done
curl -fsS "$url/healthz" >/dev/null || { echo "fedseg serve did not answer on $url"; exit 1; }
echo "   server up on $url (pid $server)"

echo "== a phantom CT study"
fedseg phantoms --out "$work/phantoms" --sites 1 --cases-per-site 1 --modalities ct --seed 7 >/dev/null 2>&1
studies=("$(find "$work/phantoms" -type d -name ct | head -n 1)")
pet="$data/sts001-raw/FDG_PET/image"
if [ -d "$pet" ]; then studies+=("$pet"); else echo "   $pet missing: sending the phantom only"; fi

models=no
if compgen -G "$shipped/*/manifest.json" >/dev/null || compgen -G "$shipped/*/*/manifest.json" >/dev/null; then
  models=yes
else
  echo "!! $shipped holds no model bundles yet (run 'make models'): the studies are stored, not segmented"
fi

python - "$url" "$work" "$models" "${studies[@]}" <<'PY'
import sys
from pathlib import Path

from service.api.client import ServiceClient, format_measurements

url, work, models, folders = sys.argv[1], Path(sys.argv[2]), sys.argv[3] == "yes", sys.argv[4:]
client = ServiceClient(
    url, (work / "sender.token").read_text().strip(), (work / "reader.token").read_text().strip()
)
jobs = []
sent = []
for folder in folders:
    files = sorted(p for p in Path(folder).rglob("*") if p.is_file() and p.suffix in {".dcm", ""})
    study = client.stow(files)
    sent.append(study)
    print(f"   sent {len(files)} instances by STOW-RS: study ...{study[-12:]}")
    if models:
        jobs.append(client.queue(study))
(work / "studies.txt").write_text("".join(f"{s}\n" for s in sent))
for job_id in jobs:
    job = client.wait(job_id, timeout_s=1800)
    seconds = job["timings"].get("total_s", "?")
    print(f"== job {job_id[:8]}: {job['state']} in {seconds} s {job['error'] or ''}")
    if job["state"] == "succeeded":
        print(format_measurements(client.measurements(job)))
PY
if [ "$models" = yes ] && [ -d "$pet" ]; then
  echo "   note: the raw PET is a whole-body scan; the shipped pet-lesion model was trained on"
  echo "   tumour-centred crops and over-segments whole-body PET (here into the bladder; the"
  echo "   planner's GTV_Mass is 366 mL). See models/README.md: research use on crops only."
fi

reader="$(cat "$work/reader.token")"
echo "== open in a browser (reader token: $reader)"
echo "   dashboard   $url/dashboard/   (paste the token, then click a job)"
echo "   OHIF viewer $url/viewer/      (after signing in on the dashboard)"
while read -r study; do
  [ -n "$study" ] && echo "   study       $url/viewer/viewer?StudyInstanceUIDs=$study&token=$reader"
done <"$work/studies.txt"
if [ "$keep" = 1 ]; then
  echo "   server left running (pid $server); stop it with: kill $server"
elif [ "$wait_for_user" = 1 ]; then
  echo "== fedseg serve is running on $url; press Ctrl-C to stop it (log: $work/serve.log)"
  trap 'echo; echo "== stopping"; stop; exit 0' INT TERM
  wait "$server" || true
else
  echo "   (not a terminal: stopping the server; run 'make demo' in a terminal to keep it,"
  echo "    or scripts/demo_service.sh --keep)"
fi
