"""The fixed corpus of `bench/peers.py`: 2,000 texts of 3 to 60 words, the same on every machine
(seeded `random.Random`, whose integer and choice streams Python keeps stable), and the bodies
the load generator picks from."""

from __future__ import annotations

import json
import random
from pathlib import Path

from bench.common import texts

CORPUS_SIZE = 2000
MIN_WORDS, MAX_WORDS = 3, 60
SEED = 11

IDENTICAL_TEXT = texts(1, seed=3)[0]
"""The short text every request of the old benchmark (`bench/service.py`) sent."""

_VOCABULARY = """
the a of and to in is that for on with as it by from at this be are was an or which not have
model models vector vectors embedding embeddings search query queries document documents text texts
sentence sentences token tokens batch batches request requests server servers client clients agent
agents tool tools result results score scores similarity retrieval ranking index cache memory
latency throughput queue worker workers thread threads process graphics processing unit accelerator
network inference training evaluation benchmark dataset language english translation summary
question answer context window length padding attention layer layers transformer encoder pooling
mean normalized cosine distance nearest neighbour cluster semantic lexical keyword hybrid dense
sparse quickly slowly carefully often rarely always never before after during between across
remote local shared private secure timeout retry failure recovery healthy ready warm cold
configuration deployment container kubernetes docker service endpoint protocol stream response
payload compression encoding decoding floating precision half single double matrix multiply
kernel device host pool shard merge split order stable deterministic random sample experiment
"""
WORDS = _VOCABULARY.split()


def corpus() -> list[str]:
    """2,000 sentences of 3 to 60 words each, mixed evenly."""
    rng = random.Random(SEED)
    out = []
    for _ in range(CORPUS_SIZE):
        words = rng.choices(WORDS, k=rng.randint(MIN_WORDS, MAX_WORDS))
        out.append(" ".join(words).capitalize() + ".")
    return out


def single_text_bodies(texts_: list[str]) -> list[str]:
    """One OpenAI-style request body per text."""
    return [json.dumps({"input": [text]}) for text in texts_]


def multi_text_bodies(texts_: list[str], per_body: int, count: int, seed: int = SEED) -> list[str]:
    """`count` bodies of `per_body` texts drawn at random from `texts_`."""
    rng = random.Random(seed)
    return [json.dumps({"input": rng.sample(texts_, per_body)}) for _ in range(count)]


def write_bodies(path: Path, bodies: list[str]) -> Path:
    """One body per line, as `bench/peers.lua` reads them."""
    path.write_text("\n".join(bodies) + "\n")
    return path


TEXTS_PER_BODY = {"x1": 1, "x8": 8, "same": 1}
"""The `wrk` loads: 64 x 1 mixed text, 64 x 8 mixed texts, 64 x 1 identical short text."""


def write_load_bodies(folder: Path, texts_: list[str]) -> dict[str, Path]:
    """One bodies file per `wrk` load in `folder` (bench/peers.py and bench/service.py share them)."""
    return {"x1": write_bodies(folder / "x1.txt", single_text_bodies(texts_)),
            "x8": write_bodies(folder / "x8.txt", multi_text_bodies(texts_, TEXTS_PER_BODY["x8"], 500)),
            "same": write_bodies(folder / "same.txt", single_text_bodies([IDENTICAL_TEXT]))}
