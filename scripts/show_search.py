"""Print a /v1/search response (read from stdin) as a short ranked list, for the quickstart."""

import json
import sys

body = json.load(sys.stdin)
if "error" in body:
    sys.exit(f"  error: {body['error']['message']}")
flags = ", ".join(f for f in ("reranked", "cached", "degraded") if body.get(f)) or "retrieval only"
print(f"  [{flags}] {body['timings_ms']['total']:.0f} ms")
for rank, result in enumerate(body["results"], 1):
    print(f"  {rank}. {result['id']:45s} score {result['score']:7.3f}  retrieval {result['retrieval_score']:.3f}")
