"""The benchmarks' own parts: no imports from tests/, the fixed peer corpus, the README writer and the accuracy
gate of `bench/peers.py`. The wrk script and the speech bench run for real in tests/repo/test_bench_runs.py."""

from __future__ import annotations

import ast
import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from bench import peers
from bench.peers_corpus import MAX_WORDS, MIN_WORDS, corpus, multi_text_bodies

ROOT = Path(__file__).resolve().parents[2]


def test_bench_never_imports_from_tests() -> None:
    """bench/ runs without the test suite (issue 10): no `tests` import in any bench module."""
    offenders = []
    for path in sorted((ROOT / "bench").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            if isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            offenders += [f"{path.name}: {n}" for n in names if n == "tests" or n.startswith("tests.")]
    assert offenders == []


def test_bridge_cpu_bench_runs_and_round_trips_the_vectors() -> None:
    """bench/bridge_cpu.py checks inside each run that the vectors come back exactly (both encodings)."""
    import asyncio

    from bench import bridge_cpu

    for encoding in ("base64", "float"):
        assert len(asyncio.run(bridge_cpu.measure(encoding))) == bridge_cpu.RUNS


def test_peer_corpus_is_fixed_and_mixed() -> None:
    texts = corpus()
    assert texts == corpus()
    lengths = [len(t.split()) for t in texts]
    assert len(texts) == 2000 and min(lengths) == MIN_WORDS and max(lengths) == MAX_WORDS
    # the published numbers were measured on exactly this corpus: a change must be deliberate
    digest = hashlib.sha256("\n".join(texts).encode()).hexdigest()
    assert digest == "f9aa0cd0219206765a0f48d6c022743fa54e7c6e25a8f68f646a7db7aa119d68"


def test_multi_text_bodies_are_openai_requests_of_distinct_corpus_texts() -> None:
    texts = corpus()
    bodies = [json.loads(b) for b in multi_text_bodies(texts, 8, 50)]
    assert all(len(b["input"]) == 8 == len(set(b["input"])) for b in bodies)
    assert all(t in set(texts) for b in bodies for t in b["input"])


def test_readme_block_replaces_only_what_lies_between_the_markers(tmp_path: Path) -> None:
    readme = tmp_path / "README.md"
    readme.write_text(f"before\n{peers.START_MARKER}\nold table\n{peers.END_MARKER}\nafter\n")
    peers.write_readme("| new | table |", readme)
    assert readme.read_text() == f"before\n{peers.START_MARKER}\n| new | table |\n{peers.END_MARKER}\nafter\n"


def test_bench_readme_has_the_peers_markers() -> None:
    text = (ROOT / "bench" / "README.md").read_text()
    assert text.index(peers.START_MARKER) < text.index(peers.END_MARKER)


@pytest.mark.parametrize("argv, message", [
    (["--loads", "x1,x3"], "--loads: unknown x3"),
    (["--ours-env", "GPU_CPU_THREADS"], "--ours-env takes NAME=VALUE"),
    (["--write", "--ours-only"], "--write is for the full comparison"),
    (["--write", "--loads", "x1"], "--write is for the full comparison"),
])
def test_peers_refuses_bad_arguments_by_name(argv: list[str], message: str,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        peers.parse_args(argv)
    assert message in capsys.readouterr().err


def test_peers_arguments_for_a_quick_remeasure_of_our_side() -> None:
    args = peers.parse_args(["--ours-only", "--loads", "x1,x8", "--duration", "10",
                             "--ours-env", "GPU_CPU_THREADS=2", "--ours-env", "GPU_BATCH_WINDOW_MS=1"])
    assert args.loads == ["x1", "x8"] and args.duration == 10
    assert args.ours_env == {"GPU_CPU_THREADS": "2", "GPU_BATCH_WINDOW_MS": "1"}


def test_accuracy_gate_fails_a_vector_off_by_more_than_the_tolerance(bundled_model_path: str) -> None:
    texts = corpus()[:3]
    reference = peers.Reference(bundled_model_path, texts)
    exact = np.stack([reference.vectors[t] for t in texts])
    assert peers.check("load", "server", reference, texts, exact * 3.0) > 0.99999  # scale does not matter
    nudged = exact.copy()
    nudged[1] += 0.02 * np.roll(exact[1], 1)  # a cosine of about 0.9998 with the reference
    with pytest.raises(peers.AccuracyError, match="server, load: min cosine"):
        peers.check("load", "server", reference, texts, nudged)


def test_speech_bench_counts_word_errors_and_refuses_bad_arguments(capsys: pytest.CaptureFixture[str]) -> None:
    from bench import speech
    from bench.speech_corpus import word_errors

    assert word_errors("The quick brown fox.", "the quick brown box") == (1, 4)
    assert word_errors("a b c", "a b c d e") == (2, 3)
    assert speech.parse_args(["--quick"]).notes == 32
    with pytest.raises(SystemExit):
        speech.parse_args(["--sides", "ours,whisperx"])
    assert "--sides: unknown whisperx" in capsys.readouterr().err
