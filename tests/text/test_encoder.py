"""polymodal.text.SentenceEncoder on the real bundled all-MiniLM-L6-v2, offline."""

import json

import numpy as np
import pytest

from polymodal.core.errors import ConfigError
from polymodal.text import SentenceEncoder
from polymodal.text.embedding_cache import EmbeddingCache
from polymodal.text.encoder import _model_fingerprint


def test_minilm_gives_unit_vectors_that_rank_paraphrases_first(minilm):
    vecs = minilm.encode(["a happy dog", "a joyful puppy", "tax law"])
    assert vecs.shape == (3, 384) and vecs.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vecs, axis=1), 1.0, atol=1e-5)
    sim_paraphrase, sim_unrelated = vecs[0] @ vecs[1], vecs[0] @ vecs[2]
    assert sim_paraphrase > sim_unrelated + 0.3
    assert minilm.dim == 384


def test_batches_give_the_same_vectors_as_one_call(tmp_path):
    texts = [f"sentence number {i} about {w}" for i, w in enumerate(["cats", "rain", "trains", "music", "bread"])]
    whole = SentenceEncoder(cache=False, batch_size=64).encode(texts)
    pieces = SentenceEncoder(cache=False, batch_size=2).encode(texts)
    np.testing.assert_allclose(whole, pieces, atol=1e-5)


def test_single_string_duplicates_and_empty_input(minilm):
    one = minilm.encode("a happy dog")
    assert one.shape == (384,)
    dup = minilm.encode(["a happy dog", "tax law", "a happy dog"])
    np.testing.assert_array_equal(dup[0], dup[2])
    np.testing.assert_allclose(dup[0], one, atol=1e-6)
    assert minilm.encode([]).shape == (0, 384)


def test_disk_cache_serves_repeated_runs_without_loading_the_model(tmp_path):
    db = tmp_path / "emb.sqlite"
    first = SentenceEncoder(cache_path=db)
    a = first.encode(["alpha beta", "gamma delta"])
    assert first.encoded_count == 2
    second = SentenceEncoder(cache_path=db)
    b = second.encode(["gamma delta", "alpha beta"])
    assert second.encoded_count == 0 and second._model is None  # nothing re-encoded, model never loaded
    np.testing.assert_array_equal(a[::-1], b)
    second.encode(["alpha beta", "something new"])
    assert second.encoded_count == 1


def test_cache_is_keyed_by_model(tmp_path):
    db = tmp_path / "emb.sqlite"
    EmbeddingCache(db, "model-a").put([("hello", np.ones(4, dtype=np.float32))])
    assert "hello" in EmbeddingCache(db, "model-a").get(["hello"])
    assert EmbeddingCache(db, "model-b").get(["hello"]) == {}


def test_fingerprint_changes_with_the_model_files(tmp_path):
    model = tmp_path / "m"
    model.mkdir()
    (model / "config.json").write_text(json.dumps({"hidden_size": 8}))
    (model / "model.safetensors").write_bytes(b"x" * 10)
    before = _model_fingerprint(model)
    (model / "model.safetensors").write_bytes(b"x" * 11)
    assert _model_fingerprint(model) != before


def test_bad_inputs_are_named(tmp_path, minilm):
    with pytest.raises(TypeError, match="item 1 is int"):
        minilm.encode(["fine", 3])
    with pytest.raises(ConfigError, match="not a directory"):
        SentenceEncoder(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="not a sentence-transformers model"):
        SentenceEncoder(tmp_path / "empty")
    with pytest.raises(ConfigError, match="batch_size"):
        SentenceEncoder(batch_size=0)


def test_any_sentence_transformers_path_works(tmp_path):
    from polymodal.text import bundled_minilm_path

    enc = SentenceEncoder(bundled_minilm_path(), cache=False)
    assert enc.encode("hello world").shape == (384,)
