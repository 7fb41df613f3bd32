"""The embedder's model check and the litellm-backed embedder (litellm replaced by a stand-in)."""

import dataclasses
import sys
import types

import numpy as np
import pytest

from voicecalm.models.embedder import ALL_MINILM_L6_V2, EmbeddingModelError, LocalEmbedder, ModelFile, locate_model
from voicecalm.understanding.llm import LiteLLMEmbedder


def test_the_packaged_model_matches_its_checksums():
    directory = locate_model(ALL_MINILM_L6_V2)
    assert (directory / "model.safetensors").stat().st_size == 90_868_376


def test_a_checksum_mismatch_is_refused_with_a_clear_error():
    wrong = dataclasses.replace(ALL_MINILM_L6_V2, files=(ModelFile("tokenizer.json", 466_247, "0" * 64),))
    with pytest.raises(EmbeddingModelError, match="does not match sha256"):
        locate_model(wrong)


def test_a_missing_package_names_what_to_install():
    missing = dataclasses.replace(ALL_MINILM_L6_V2, packages=(("no-such-dist", "no_such_package_xyz", "model"),))
    with pytest.raises(EmbeddingModelError, match="pip install no-such-dist"):
        locate_model(missing)


def test_the_local_embedder_is_shared_per_process():
    assert LocalEmbedder.shared() is LocalEmbedder.shared()
    assert LocalEmbedder.shared().name == "local:all-MiniLM-L6-v2"


async def test_litellm_embedder_batches_orders_and_normalises(monkeypatch):
    calls = []

    async def aembedding(**arguments):
        calls.append(arguments)
        data = [{"index": i, "embedding": [float(len(text)), 0.0, 0.0]} for i, text in enumerate(arguments["input"])]
        return types.SimpleNamespace(data=list(reversed(data)))  # out of order on purpose

    monkeypatch.setitem(sys.modules, "litellm", types.SimpleNamespace(aembedding=aembedding))
    embedder = LiteLLMEmbedder("openai/text-embedding-3-small", api_base="http://127.0.0.1:9", batch_size=2)
    vectors = await embedder.embed(["a", "bb", "ccc"])
    assert embedder.name == "litellm:openai/text-embedding-3-small"
    assert [c["input"] for c in calls] == [["a", "bb"], ["ccc"]]
    assert all(c["api_base"] == "http://127.0.0.1:9" for c in calls)
    assert np.allclose(vectors, [[1, 0, 0]] * 3)


async def test_litellm_errors_become_embedding_model_errors(monkeypatch):
    async def aembedding(**arguments):
        raise ConnectionError("refused")

    monkeypatch.setitem(sys.modules, "litellm", types.SimpleNamespace(aembedding=aembedding))
    with pytest.raises(EmbeddingModelError, match="refused"):
        await LiteLLMEmbedder("openai/x").embed(["hello"])
