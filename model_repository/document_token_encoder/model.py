"""Triton python backend, `document_token_encoder`: the late-interaction reranker's document side,
[batch, tokens, dim] unit token vectors, zero at padding: the frozen document Transformer and the
document projection, the computation `build` runs over the corpus into the token store. The
gateway calls it for documents outside the corpus (`POST /v1/rerank`) and scores them by MaxSim.

The build copies cpu_runtime.py beside this file; it does the batching, the runtimes and the
token-vector computation this model shares with `query_token_encoder`.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from cpu_runtime import TokenVectorsPythonModel  # noqa: E402


class TritonPythonModel(TokenVectorsPythonModel):
    pass
