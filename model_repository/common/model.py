"""Triton python-backend entry point; the work is in cpu_runtime.py (copied beside this file)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from cpu_runtime import BatchingPythonModel  # noqa: E402


class TritonPythonModel(BatchingPythonModel):
    """See cpu_runtime.BatchingPythonModel."""
