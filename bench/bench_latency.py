"""End-to-end latency of the clinical server: STOW-RS received → results delivered by C-STORE.

Usage: ``python bench/bench_latency.py [--models DIR] [--repeat N] [--write docs/benchmarks.md]``

Starts the API with its in-process worker on loopback (SQLite, temporary state), a dcmtk
``storescp`` as the delivery destination, then for each case sends the study by STOW-RS, queues
it at once (the quiet period is a site setting and is left out), and waits until the job's
results are delivered. The table gives the end-to-end time (median of N) and the share of it
spent outside model inference (reading, resampling, post-processing, writing, storing, queue
and delivery). Without bundles in ``--models`` it builds 1x1x1-convolution threshold stand-ins,
so the numbers then measure everything but a real network.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import uvicorn  # noqa: E402

from bench.report import replace_section  # noqa: E402
from service.api.client import ServiceClient  # noqa: E402
from service.api.main import create_app  # noqa: E402
from service.auth.tokens import Role, create_token  # noqa: E402
from service.config import Destination, Settings, get_settings  # noqa: E402
from service.server import segment_service  # noqa: E402

#: dcmtk's storescp (pynetdicom installs a Python app of the same name into the venv).
DCMTK_STORESCP = "/usr/bin/storescp"

PET = "sts001-raw/FDG_PET/image"


def _pointwise(weights: np.ndarray, bias: np.ndarray) -> bytes:
    """A 1x1x1 Conv3d ONNX network: logits[k] = weights[k] * x + bias[k]."""
    from onnx import TensorProto, helper, numpy_helper

    k, c = weights.shape
    w = numpy_helper.from_array(weights.reshape(k, c, 1, 1, 1).astype(np.float32), "W")
    b = numpy_helper.from_array(bias.astype(np.float32), "B")
    node = helper.make_node("Conv", ["image", "W", "B"], ["logits"], kernel_shape=[1, 1, 1])
    shape = ["b", c, "x", "y", "z"]
    graph = helper.make_graph(
        [node],
        "threshold",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, shape)],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["b", k, "x", "y", "z"])],
        initializer=[w, b],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return bytes(model.SerializeToString())


def stand_in_models(folder: Path) -> Path:
    """Threshold bundles for ct-organs (CT) and pet-lesion (PT) under ``folder``."""
    from service.inference.bundle import save_bundle
    from service.inference.manifest import Manifest, label_dicts
    from service.labels.registry import get_table

    specs = {
        "ct-organs": ("CT", {"kind": "ct-window", "low": -200.0, "high": 200.0}, (1.5, 1.5, 3.0)),
        "pet-lesion": ("PT", {"kind": "suv", "low": 0.0, "high": 10.0}, (4.0, 4.0, 4.0)),
    }
    for task, (modality, normalisation, spacing) in specs.items():
        table = get_table(task)
        classes = len(table.labels) + 1
        weights = np.zeros((classes, 1))
        weights[0, 0], weights[1, 0] = -1.0, 1.0
        bias = np.full(classes, -10.0)
        bias[0], bias[1] = 0.45, -0.45
        manifest = Manifest.model_validate(
            {
                "name": f"threshold-{task}",
                "version": "0.0.1",
                "task": task,
                "modality": modality,
                "labels": label_dicts(table),
                "spacing": spacing,
                "normalisation": normalisation,
                "patch_size": (64, 64, 64),
                "overlap": 0.25,
                "provenance": {"created": "bench", "notes": "threshold stand-in"},
                "onnx_opset": 17,
            }
        )
        save_bundle(folder / f"threshold-{task}" / "0.0.1", _pointwise(weights, bias), manifest)
    return folder


def _phantom_ct(folder: Path) -> Path:
    subprocess.run(
        [
            *(sys.executable, "-m", "service.cli.main", "-q", "phantoms", "--out", str(folder)),
            *("--sites", "1", "--cases-per-site", "1", "--modalities", "ct", "--seed", "7"),
        ],
        check=True,
        capture_output=True,
        cwd=ROOT,
    )
    return next(folder.rglob("ct"))


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Bench:
    """One server, worker and storescp destination in a temporary folder."""

    def __init__(self, work: Path, models: Path) -> None:
        self.scp_port, api_port = _free_port(), _free_port()
        (work / "received").mkdir(parents=True)
        self.scp = subprocess.Popen(
            [
                "/usr/bin/storescp",
                "-aet",
                "BENCH",
                "-od",
                str(work / "received"),
                str(self.scp_port),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self.settings = get_settings(
            state_dir=work / "state",
            model_store=work / "installed",
            shipped_models=models,
            api_port=api_port,
            dicom_port=0,
            quiet_period_s=3600,
            worker_poll_s=0.1,
            destinations=[
                Destination(name="bench", kind="dimse", port=self.scp_port, ae_title="BENCH")
            ],
        )
        self.app = create_app(self.settings, (segment_service(),))
        config = uvicorn.Config(self.app, host="127.0.0.1", port=api_port, log_level="warning")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> ServiceClient:
        self.thread.start()
        while not self.server.started:
            time.sleep(0.05)
        state = self.app.state.server
        with state.factory() as session, session.begin():
            sender, _ = create_token(session, "bench-sender", Role.SENDER)
            reader, _ = create_token(session, "bench-reader", Role.READER)
        return ServiceClient(f"http://127.0.0.1:{self.settings.api_port}", sender, reader)

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=60)
        self.scp.terminate()
        self.scp.wait(timeout=20)


def run_case(client: ServiceClient, files: list[Path], results_root: Path) -> dict[str, float]:
    """Send, queue, wait for delivery; seconds end to end and in inference."""
    import json

    start = time.time()
    study = client.stow(files)
    job = client.wait(client.queue(study), timeout_s=3600, delivered=True)
    if job["state"] != "succeeded":
        raise RuntimeError(f"job failed: {job['error']}")
    delivered = max(datetime.fromisoformat(d["delivered_at"]) for d in job["deliveries"])
    summary = json.loads((results_root / job["results"]["summary"][0]["path"]).read_text())
    timings = summary["timings_s"]
    return {
        "end_to_end": delivered.timestamp() - start,
        "infer": float(timings["infer"]),
        "pipeline": float(sum(timings.values())),
    }


def measure(cases: dict[str, Path], models: Path, repeat: int) -> dict[str, list[dict[str, float]]]:
    """Run each case ``repeat`` times, each on a fresh server."""
    runs: dict[str, list[dict[str, float]]] = {name: [] for name in cases}
    for _ in range(repeat):
        with tempfile.TemporaryDirectory(prefix="fedseg-bench-") as folder:
            bench = Bench(Path(folder), models)
            with bench as client:
                for name, case in cases.items():
                    files = sorted(p for p in case.rglob("*") if p.is_file())
                    root = bench.settings.state_dir / "results"
                    runs[name].append(run_case(client, files, root))
    return runs


def table(runs: dict[str, list[dict[str, float]]], model_note: str) -> str:
    """The Markdown table of the runs."""
    lines = [
        "| study | end to end (s) | segment pipeline (s) | inference (s) | outside inference |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, results in runs.items():
        e2e = statistics.median(r["end_to_end"] for r in results)
        pipeline = statistics.median(r["pipeline"] for r in results)
        infer = statistics.median(r["infer"] for r in results)
        share = 100.0 * (e2e - infer) / e2e
        lines.append(f"| {name} | {e2e:.2f} | {pipeline:.2f} | {infer:.2f} | {share:.0f} % |")
    cpu = platform.processor() or platform.machine()
    lines += [
        "",
        f"Median of {len(next(iter(runs.values())))} run(s) per study; {cpu}, "
        f"{os.cpu_count()} cores, CPU "
        "(onnxruntime CPU provider). End to end = STOW-RS request start to the last result "
        "instance delivered by C-STORE to a dcmtk storescp on loopback; the job is queued at "
        "once (the site's quiet period is excluded). Segment pipeline = read + preprocess + "
        "infer + postprocess + write in `summary.json`; the rest is storing, the queue, "
        f"ingesting the results and delivery. Models: {model_note}. "
        "Reproduce: `python bench/bench_latency.py --write docs/benchmarks.md`.",
    ]
    return "\n".join(lines)


def main() -> int:
    """Measure and print (and optionally write) the latency table."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--models", type=Path, default=ROOT / "models", help="bundle folder")
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--write", type=Path, help="Markdown file to update (bench:latency)")
    args = parser.parse_args()
    if not Path(DCMTK_STORESCP).is_file():  # dcmtk, not pynetdicom's app
        parser.error("storescp (dcmtk) is needed as the delivery destination")
    data = Settings().data
    with tempfile.TemporaryDirectory(prefix="fedseg-bench-in-") as folder:
        models, note = args.models, f"the bundles in `{args.models.name}/`"
        if not any(models.glob("*/manifest.json")) and not any(models.glob("*/*/manifest.json")):
            models = stand_in_models(Path(folder) / "models")
            note = (
                "no trained bundles were installed, so 1x1x1-convolution threshold stand-ins "
                "(ct-organs, pet-lesion) ran: inference here is nearly free and the table "
                "measures the service around it"
            )
        cases = {
            "phantom CT (fedseg phantoms, small)": _phantom_ct(Path(folder) / "phantom"),
            "raw GE PET sts001, 267 slices": data / PET,
        }
        runs = measure(cases, models, args.repeat)
    text = table(runs, note)
    print(text)
    if args.write:
        replace_section(args.write, "latency", "Service end-to-end latency", text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
