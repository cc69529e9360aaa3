"""The late-interaction token store: int8 round trip, MaxSim against a brute-force reference,
and the refusals that keep a wrong store from serving."""

from __future__ import annotations

import numpy as np
import pytest

from ranking_gateway.core.token_store import (
    VECTORS,
    TokenStore,
    TokenStoreError,
    maxsim,
    quantize,
    store_sha256,
    write_token_store,
)

DIM = 16


def _unit(rng: np.random.Generator, n: int) -> np.ndarray:
    x = rng.standard_normal((n, DIM)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


@pytest.fixture
def docs() -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    return [_unit(rng, n) for n in (3, 7, 1, 12, 5)]


@pytest.fixture
def store_dir(tmp_path, docs):
    write_token_store(tmp_path / "store", docs, DIM)
    return tmp_path / "store"


def _reference_maxsim(query: np.ndarray, doc: np.ndarray) -> float:
    return float(sum(max(float(q @ d) for d in doc) for q in query))


def test_quantize_round_trip_is_close():
    x = _unit(np.random.default_rng(1), 200)
    q, scale = quantize(x)
    assert q.dtype == np.int8 and scale.dtype == np.float16
    back = q.astype(np.float32) * scale[:, None].astype(np.float32)
    assert np.abs(back - x).max() < 0.01
    # cosines of unit vectors move by about 1e-3
    assert np.abs(back @ x.T - x @ x.T).max() < 0.02


def test_maxsim_matches_brute_force(store_dir, docs):
    store = TokenStore.open(store_dir, documents=len(docs), dim=DIM, sha256=store_sha256(store_dir))
    query = _unit(np.random.default_rng(2), 6)
    rows = [3, 0, 4, 2]
    got = store.maxsim(query, rows)
    expected = [_reference_maxsim(query, docs[r]) for r in rows]
    assert got.shape == (4,)
    np.testing.assert_allclose(got, expected, atol=0.05)
    # ranking by the stored vectors is the exact ranking here
    assert list(np.argsort(-got)) == list(np.argsort(-np.array(expected)))


def test_zero_query_rows_add_nothing(store_dir, docs):
    store = TokenStore.open(store_dir, documents=len(docs), dim=DIM)
    query = _unit(np.random.default_rng(3), 4)
    padded = np.concatenate([query, np.zeros((5, DIM), np.float32)])
    np.testing.assert_allclose(store.maxsim(padded, [1, 3]), store.maxsim(query, [1, 3]), atol=1e-5)


def test_maxsim_over_request_time_vectors_is_the_stores(store_dir, docs):
    """`maxsim` over float vectors computed at request time (`/v1/rerank`) is the store's math:
    the same rows stacked give the store's scores (within int8), and the exact brute force."""
    store = TokenStore.open(store_dir, documents=len(docs), dim=DIM)
    query = _unit(np.random.default_rng(4), 5)
    rows = [4, 1, 3]
    got = maxsim(query, np.concatenate([docs[r] for r in rows]), [len(docs[r]) for r in rows])
    np.testing.assert_allclose(got, [_reference_maxsim(query, docs[r]) for r in rows], atol=1e-5)
    np.testing.assert_allclose(got, store.maxsim(query, rows), atol=0.05)
    assert maxsim(query, np.zeros((0, DIM), np.float32), []).shape == (0,)


def test_document_round_trip(store_dir, docs):
    store = TokenStore.open(store_dir, documents=len(docs), dim=DIM)
    assert store.documents == 5 and store.dim == DIM
    np.testing.assert_allclose(store.document(3), docs[3], atol=0.01)


def test_missing_file_is_refused(store_dir, docs):
    (store_dir / VECTORS).unlink()
    with pytest.raises(TokenStoreError, match="vectors.npy missing"):
        TokenStore.open(store_dir, documents=len(docs), dim=DIM)


def test_changed_bytes_are_refused_by_hash(store_dir, docs):
    digest = store_sha256(store_dir)
    path = store_dir / VECTORS
    data = bytearray(path.read_bytes())
    data[-1] ^= 0x01  # one flipped bit in the last vector
    path.write_bytes(bytes(data))
    with pytest.raises(TokenStoreError, match="sha256"):
        TokenStore.open(store_dir, documents=len(docs), dim=DIM, sha256=digest)


def test_another_corpus_or_dim_is_refused(store_dir, docs):
    with pytest.raises(TokenStoreError, match="6 documents expected|the manifest says 6"):
        TokenStore.open(store_dir, documents=6, dim=DIM)
    with pytest.raises(TokenStoreError, match="expected int8"):
        TokenStore.open(store_dir, documents=len(docs), dim=DIM * 2)


def test_empty_document_is_rejected_at_write(tmp_path):
    with pytest.raises(ValueError):
        write_token_store(tmp_path / "s", [np.zeros((0, DIM), np.float32)], DIM)
