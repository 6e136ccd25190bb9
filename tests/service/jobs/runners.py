"""Job runners that a spawned job process imports by name (so not in a test module).

Imported as ``from tests.service.jobs.runners import ...``. Each does one real thing: allocate
past a memory limit, touch shared memory, crash, refuse its input, or run onnxruntime past
its allocator.
"""

from __future__ import annotations

import logging
import mmap
import os
import signal
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

from service.errors import DicomInputError
from service.jobs.worker import Progress

logger = logging.getLogger("tests.jobs.child")

#: Far more than any test limit; what a decompression bomb asks for.
HUGE_BYTES = 4 * 1024**3


def allocating_runner(inputs: Sequence[Path], out_dir: Path, progress: Progress) -> None:
    """Report progress and log, then allocate 4 GiB with numpy."""
    progress("allocate", 0.5)
    logger.warning("allocating %d bytes", HUGE_BYTES)
    np.ones(HUGE_BYTES // 8, dtype=np.float64)


def shared_memory_runner(inputs: Sequence[Path], out_dir: Path, progress: Progress) -> None:
    """Touch 1 GiB of shared anonymous memory (which RLIMIT_DATA does not count), then wait."""
    size = 1024**3
    region = mmap.mmap(-1, size, flags=mmap.MAP_SHARED)
    for offset in range(0, size, mmap.PAGESIZE):
        region[offset] = 1
    time.sleep(120)  # the parent stops it long before


def crashing_runner(inputs: Sequence[Path], out_dir: Path, progress: Progress) -> None:
    """Die from SIGSEGV, as a broken native library would."""
    os.kill(os.getpid(), signal.SIGSEGV)


def refusing_runner(inputs: Sequence[Path], out_dir: Path, progress: Progress) -> None:
    """Refuse the input as the reader does."""
    raise DicomInputError(f"{len(inputs)} files hold no image series; send a CT, PET or MR")


def expanding_model() -> bytes:
    """An ONNX graph whose output is a 4 GiB float tensor expanded from a scalar input."""
    shape = numpy_helper.from_array(np.array([1024, 1024, 1024], dtype=np.int64), "shape")
    node = helper.make_node("Expand", ["x", "shape"], ["y"])
    graph = helper.make_graph(
        [node],
        "expand",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1024, 1024, 1024])],
        initializer=[shape],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model.SerializeToString()


def onnxruntime_runner(inputs: Sequence[Path], out_dir: Path, progress: Progress) -> None:
    """Run a model whose output needs 4 GiB: onnxruntime's allocator fails under a limit."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(expanding_model(), options, providers=["CPUExecutionProvider"])
    session.run(None, {"x": np.ones(1, dtype=np.float32)})


def idle_runner(inputs: Sequence[Path], out_dir: Path, progress: Progress) -> None:
    """Do nothing (measures the cost of the job process itself)."""
