"""How a job fails: refused input, out of memory, or a crash, and which of them are retried.

* a :class:`~service.errors.FedsegError` means the input cannot be segmented: never retried;
* :class:`JobOutOfMemoryError` (a ``MemoryError``, an onnxruntime allocation failure, or the
  job process killed for its memory) is never retried either: the same input needs the same
  memory, and each attempt would take it again;
* :class:`JobProcessError` (the job process crashed) and any other exception are retried while
  attempts remain.
"""

from __future__ import annotations

import re

from service.errors import FedsegError

#: What onnxruntime, the C++ runtime and CUDA say when an allocation fails.
_ALLOCATION_FAILED = re.compile(
    r"Failed to allocate memory|bad_alloc|out of memory|Cannot allocate memory|"
    r"CUDNN_STATUS_ALLOC_FAILED|cudaErrorMemoryAllocation",
    re.IGNORECASE,
)


class JobOutOfMemoryError(FedsegError):
    """A job needed more memory than it may use (never retried; the message says how much)."""

    http_status = 507


class JobProcessError(Exception):
    """A job's process crashed or ended without a result (retried while attempts remain)."""


def is_out_of_memory(exc: BaseException) -> bool:
    """Whether ``exc`` reports a failed allocation (Python's, onnxruntime's, CUDA's)."""
    if isinstance(exc, MemoryError):
        return True
    return bool(_ALLOCATION_FAILED.search(str(exc)))


def out_of_memory_text(limit_bytes: int, cause: str) -> str:
    """The job error of an out-of-memory failure: the limit, the cause, what to do."""
    if limit_bytes > 0:
        limit = f"the job memory limit of {_size(limit_bytes)} (FEDSEG_JOB_MEMORY_LIMIT_BYTES)"
    else:
        limit = "the memory this machine could give it"
    return (
        f"out of memory: the job needed more than {limit}; not retried. Raise the limit, or "
        f"send a smaller series ({cause})"
    )


def _size(count: int) -> str:
    gib = count / 1024**3
    return f"{gib:.1f} GiB" if gib >= 1 else f"{count / 1024**2:.0f} MiB"
