"""What running each job in its own process costs, and what it protects.

Usage: ``python -m bench.bench_job_isolation [--repeat N]``

1. Overhead: a small real job (``segment_study``, threshold bundle, phantom CT) in the worker's
   process and in a child process forked from the fork server (what the server does), median
   of N each after one warm-up run.
2. Protection: the server (API, C-STORE SCP, in-process worker) runs a real job whose model
   grid needs 2.4 GiB in one array under a 1 GiB job limit, while a client polls ``/healthz``;
   it prints the job's state, attempts and error, how many polls were answered while the job
   ran and the slowest one, and the resident peak of the server process.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import tempfile
import time
from pathlib import Path

# Heavy imports live in the functions: each job process re-imports this ``__main__`` module
# (multiprocessing's rule), and the figure should be the job's cost, not this script's.


def overhead(folder: Path, repeat: int) -> dict[str, float]:
    """Median seconds of the same real job in process and in a child process.

    The job is ``segment_study`` with a threshold bundle on a 16-slice phantom CT; the first
    child run also starts the fork server (reported apart).
    """
    from service.jobs.runner import isolated_segment_runner, segment_runner
    from tests.hardening.test_job_memory_limit import LIMIT
    from tests.service.api.conftest import api_settings
    from tests.service.jobs.support import install_ct_threshold, write_ct_study

    settings = api_settings(folder, job_memory_limit_bytes=LIMIT)
    install_ct_threshold(settings, folder)
    files = write_ct_study(folder / "ct", slices=16)
    runners = {
        "in_process_s": segment_runner(settings),
        "child_process_s": isolated_segment_runner(settings),
    }
    times: dict[str, list[float]] = {key: [] for key in runners}
    first_child = 0.0
    for i in range(repeat + 1):
        for key, runner in runners.items():
            out = folder / f"{key}-{i}"
            out.mkdir()
            start = time.perf_counter()
            runner(files, out, lambda *_: None)
            elapsed = time.perf_counter() - start
            if i == 0:  # warm-up: model load caches, the fork server's start
                first_child = elapsed if key == "child_process_s" else first_child
                continue
            times[key].append(elapsed)
    medians = {key: round(statistics.median(values), 3) for key, values in times.items()}
    return medians | {"first_child_process_s": round(first_child, 3)}


def protection(folder: Path) -> dict[str, object]:
    """A job over its limit, and the API's answers meanwhile."""
    from service.auth.tokens import Role
    from tests.hardening.test_job_memory_limit import health_poller, over_limit_job, wait_finished

    with over_limit_job(folder) as (api, _, job_url), health_poller(api.url) as answers:
        job = wait_finished(job_url, api.headers(Role.READER))
    return {
        "state": job["state"],
        "attempts": job["attempts"],
        "error": job["error"],
        "healthz_answers": len(answers),
        "healthz_not_200": sum(status != 200 for _, status, _ in answers),
        "slowest_healthz_s": round(max(seconds for _, _, seconds in answers), 3),
        "server_peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
    }


def main() -> None:
    """Run both parts and print JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3, help="runs of each overhead case")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        result = {
            "overhead": overhead(Path(tmp) / "overhead", args.repeat),
            "protection": protection(Path(tmp) / "protection"),
        }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
