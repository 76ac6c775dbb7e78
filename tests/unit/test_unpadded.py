"""The BERT encoder without padding (gpu_service/models/unpadded.py): the same vectors as the padded
forward and as `SentenceTransformer.encode`, on the bundled model's real weights."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from transformers import BertConfig, BertModel, RobertaConfig, RobertaModel

from gpu_service.models import unpadded
from gpu_service.models.resolve import ResolvedModel
from gpu_service.tasks.embed.engine import EmbeddingEngine

TEXTS = [
    "a",
    "The quick brown fox jumps over the lazy dog.",
    "GPU hosts share the work of an agent that has none.",
    "x",
    "Reranking orders candidates after a first retrieval; " * 3,
    "word " * 400,  # cut at the model's 256 tokens
    "The quick brown fox jumps over the lazy dog.",
]


@pytest.fixture(scope="module")
def engine(bundled_model_path: str) -> EmbeddingEngine:
    return EmbeddingEngine(ResolvedModel("all-MiniLM-L6-v2", bundled_model_path, "path"), torch.device("cpu"), False)


def test_the_bundled_model_runs_unpadded_and_matches_the_padded_forward(engine: EmbeddingEngine,
                                                                        reference_embedder) -> None:  # type: ignore[no-untyped-def]
    assert engine.padded is False
    items = engine.prepare(TEXTS, None)
    assert len({item.cost for item in items}) >= 5 and max(item.cost for item in items) == engine.max_length
    got = engine.run(items).numpy()

    bert, engine._bert = engine._bert, None  # the padded path of the same engine
    try:
        padded = engine.run(items).numpy()
    finally:
        engine._bert = bert
    reference = reference_embedder.encode(TEXTS, batch_size=3)

    # Different layouts (packed rows vs padded ones) may round differently in the last bits.
    np.testing.assert_allclose(got, padded, atol=1e-5)
    np.testing.assert_allclose(got, reference, atol=1e-5)
    assert got.shape == (len(TEXTS), 384)


def test_a_single_text_and_equal_lengths_need_no_padding_at_all(engine: EmbeddingEngine) -> None:
    items = engine.prepare(["one text alone"], None)
    packed = unpadded.Packed([item.cost for item in items], torch.device("cpu"))
    assert packed.index.tolist() == list(range(items[0].cost))
    assert engine.run(items).shape == (1, 384)


def test_packing_puts_each_token_where_padding_would() -> None:
    packed = unpadded.Packed([2, 4, 1], torch.device("cpu"))
    assert packed.positions.tolist() == [0, 1, 0, 1, 2, 3, 0]
    assert packed.index.tolist() == [0, 1, 4, 5, 6, 7, 8]
    rows = torch.arange(7.0)[:, None]
    padded = packed.pad(rows)
    assert padded[:, :, 0].tolist() == [[0, 1, 0, 0], [2, 3, 4, 5], [6, 0, 0, 0]]
    assert torch.equal(packed.unpad(padded), rows)


def test_attention_runs_over_consecutive_texts_of_equal_length() -> None:
    runs = unpadded.equal_length_runs([3, 3, 5, 5, 5, 2, 3])
    assert [tuple(r) for r in runs] == [(0, 2, 3), (6, 3, 5), (21, 1, 2), (23, 1, 3)]
    assert runs[1].rows == slice(6, 21)


def test_attention_per_run_and_in_one_padded_call_agree(engine: EmbeddingEngine) -> None:
    """The CPU's layout (a call per run of equal lengths) against an accelerator's (one masked call)."""
    items = engine.prepare(TEXTS, None)
    ids = torch.tensor([token for item in items for token in item.ids])
    lengths = [item.cost for item in items]
    with torch.inference_mode():
        per_run = unpadded.token_embeddings(engine._bert, ids, unpadded.Packed(lengths, torch.device("cpu")))
        one_call = unpadded.token_embeddings(engine._bert, ids,
                                             unpadded.Packed(lengths, torch.device("cpu"), per_run=False))
    real = unpadded.Packed(lengths, torch.device("cpu")).mask
    np.testing.assert_allclose(per_run[real].numpy(), one_call[real].numpy(), atol=1e-5)
    assert unpadded.Packed(lengths, torch.device("cpu")).runs is not None
    assert not unpadded.attention_per_run(torch.device("cuda")), "accelerators: one call per layer"
    assert not unpadded.attention_per_run(torch.device("mps"))


def test_any_order_of_a_batch_gives_the_same_vectors(engine: EmbeddingEngine) -> None:
    """The scheduler sorts batches by length (fewest attention runs); other orders only cost speed."""
    items = engine.prepare([*TEXTS, "short one", "short two", "a bit longer text here"], None)
    shuffled = engine.run(items).numpy()
    order = sorted(range(len(items)), key=lambda i: items[i].cost)
    in_order = engine.run([items[i] for i in order]).numpy()
    np.testing.assert_allclose(shuffled[order], in_order, atol=1e-5)


def test_only_plain_bert_encoders_run_unpadded() -> None:
    small = {"vocab_size": 100, "hidden_size": 16, "num_hidden_layers": 1, "num_attention_heads": 2,
             "intermediate_size": 32}
    assert unpadded.supports(BertModel(BertConfig(**small)))
    assert not unpadded.supports(BertModel(BertConfig(**small, position_embedding_type="relative_key")))
    assert not unpadded.supports(BertModel(BertConfig(**small, is_decoder=True)))
    assert not unpadded.supports(RobertaModel(RobertaConfig(**small)))  # its positions start past padding


def test_bertscore_on_a_bert_encoder_runs_unpadded_with_the_padded_token_embeddings(bundled_model_path: str) -> None:
    """BERTScore's token embeddings (layer `num_layers`) from the packed path equal bert-score's own
    padded `bert_encode` of the same batch (the parity with `BERTScorer` is in test_service_bertscore)."""
    from gpu_service.tasks.bertscore.engine import BertScoreEngine

    engine = BertScoreEngine(ResolvedModel("m", bundled_model_path, "path"), 4, torch.device("cpu"))
    assert engine.padded is False
    batch = engine.prepare(TEXTS)
    packed = engine.run(batch)
    engine.padded = True  # bert-score's padded path, same engine and layers
    reference = engine.run(batch)
    assert [t.shape for t in packed] == [t.shape for t in reference]
    for got, want in zip(packed, reference, strict=True):
        np.testing.assert_allclose(got.numpy(), want.numpy(), atol=1e-4)
