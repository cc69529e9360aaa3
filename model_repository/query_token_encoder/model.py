"""Triton python backend, `query_token_encoder`: the late-interaction reranker's query side,
[batch, tokens, dim] unit token vectors, zero at padding (the computation of
ranking_build.late_interaction.TokenEncoder, query side). The gateway scores them by MaxSim against
the document token store that `build` wrote.

The build copies cpu_runtime.py beside this file; it does the batching, the runtimes and the
token-vector computation this model shares with `document_token_encoder`.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from cpu_runtime import TokenVectorsPythonModel  # noqa: E402


class TritonPythonModel(TokenVectorsPythonModel):
    pass
