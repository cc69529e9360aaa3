from ranking_gateway.core.artifacts import ArtifactPaths
from ranking_gateway.serving.tokenization import BUCKET, TextTokenizer


def test_pairs_are_bucketed_and_truncated_documents_first(artifacts: ArtifactPaths) -> None:
    tok = TextTokenizer(artifacts.tokenizer("reranker"), max_length=64)
    batch = tok.encode_pairs("short query", ["a tiny doc", "word " * 500])
    assert batch.input_ids.shape == (2, 64) and batch.input_ids.shape[1] % BUCKET == 0
    assert batch.attention_mask[1].sum() == 64
    # the query (segment 0) survives whole, the long document (segment 1) is cut
    assert (batch.token_type_ids[1] == 0).sum() == 4  # [CLS] short query [SEP]
    tiny = batch.rows(0, 1)
    assert tiny.input_ids.shape == (1, BUCKET) and tiny.attention_mask.sum() < BUCKET


def test_single_texts_longer_than_the_budget_are_truncated(artifacts: ArtifactPaths) -> None:
    tok = TextTokenizer(artifacts.tokenizer("query_encoder"), max_length=64)
    batch = tok.encode(["word " * 500, "two words"])
    assert batch.input_ids.shape == (2, 64) and batch.attention_mask.sum(axis=1).tolist() == [64, 4]
    assert tok.lowercases
