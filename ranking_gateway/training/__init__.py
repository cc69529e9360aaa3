"""Cross-encoder reranker training (`ranking-gateway train-reranker`)."""
