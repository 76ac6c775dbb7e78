"""Speech synthesis (issue 29 §3): our `/v1/audio/speech` against piper's own HTTP server, same voice, same cores.

(a) `--clients` (16) sentences of mixed lengths sent at once, each its own request for a WAV: seconds of
    audio per wall second (and per CPU second of the server), ours against `python -m piper.http_server`
    on `en_US-joe-medium`, a `--warmup` round each first (not counted), then the sides taking turns,
    `--runs` rounds, best kept; target ours >= 1.2x.
(b) a 2,000-character paragraph, streamed from ours as raw PCM: time to the first audio against the time
    to the whole; target <= 25%.
(c) the round trip: each sentence spoken by our `/v1/audio/speech`, heard by our `/v1/audio/transcriptions`
    (Whisper tiny.en): the word error rate against the sentence; target <= 0.15.

    python -m bench.speak                  # 3 rounds of (a), then (b) and (c) (~3 minutes on 2 quiet cores)
    python -m bench.speak --quick          # 1 round
    python -m bench.speak --ours-only      # no piper (it is installed into its own venv on first use)
"""

from __future__ import annotations

import argparse
import datetime
import os
from dataclasses import dataclass

import httpx

from bench.common import save, table
from bench.speak_sides import Outcome, Side, Streamed, ours, piper, stream, transcribe
from bench.speech_corpus import word_errors

SENTENCES = [
    "Dinner is at seven.",
    "Please buy fresh milk and bread on the way home, and do not forget the eggs.",
    "The meeting moved to Thursday afternoon.",
    "It rained all night, so the garden is soaked and the path is muddy; we will walk tomorrow instead.",
    "Call me back when you land.",
    "The train leaves from platform four at half past nine, and the next one is an hour later.",
    "Your package was delivered to the front desk this morning.",
    "Thanks, that works for me.",
    "The library closes early on Sundays, but the reading room stays open until six in the evening for members.",
    "Turn left at the bakery and walk straight on.",
    "We measured the water temperature every hour and wrote each value in the notebook.",
    "Good morning, everyone.",
    "The old bridge over the river was repaired last summer, and now cyclists use it again every day.",
    "Remind me to water the plants on Friday.",
    "She painted the kitchen a pale shade of green and hung new curtains.",
    "The concert starts at eight, so we should leave the house by seven at the latest to find a parking space.",
]
"""Sentences of 3 to 20 words (about 1 to 7 seconds spoken), ours, plain words Whisper knows."""

PARAGRAPH = " ".join([
    "The lighthouse stood at the end of a narrow road that ran along the cliffs for almost three miles.",
    "Every evening the keeper climbed the hundred and twelve steps to the lamp room, checked the oil, and wiped the glass until it shone.",
    "Ships passing in the dark would see the beam sweep across the water once every ten seconds, a steady rhythm that told them exactly where the rocks began.",
    "In winter the wind was so strong that the whole tower seemed to hum, and the keeper wrote in his log that the sea had turned the colour of slate.",
    "He kept a small garden behind the house, with potatoes, onions and a row of beans that never quite ripened before the first frost.",
    "Once a month a boat came from the harbour with letters, flour, coffee and newspapers that were already two weeks old.",
    "He read every page anyway, slowly, sitting by the stove with a cup of tea, and then he folded the papers and used them to light the fire.",
    "Visitors were rare, but in the summer a few walkers made it to the end of the road and asked to see the lamp.",
    "He always said yes, and he always told them the same story about the storm of nineteen fifty two, when the power failed and he turned the lens by hand for eleven hours.",
    "Most of them did not believe him, but they nodded politely and took photographs of the view.",
    "When the lighthouse was finally automated, the keeper moved to a cottage in the village.",
    "His neighbours brought him soup when he was ill, and in return he repaired their clocks, their radios and once a very old piano.",
    "On clear nights he could name every star above the bay, and children from the school came to listen to him explain how sailors used them to find their way home.",
    "He said the sea was never the same twice, even when it looked calm, and that a good keeper learned to read it like a face.",
    "He still walked up to the cliffs every evening, just to watch the beam come on by itself, and he said that it never looked quite right without someone there to see it.",
    "And the light still turns there every night.",
])
"""About 2,000 characters: sixteen sentences of mixed lengths."""

TARGET_RATIO, TARGET_FIRST, TARGET_WER = 1.2, 0.25, 0.15


@dataclass
class Load:
    side: str
    outcomes: list[Outcome]

    def rate(self, outcome: Outcome) -> float:
        return outcome.audio_s / outcome.seconds

    @property
    def best(self) -> float:
        return max(self.rate(o) for o in self.outcomes)

    @property
    def best_cpu(self) -> float:
        return max(o.audio_s / max(o.cpu_s, 1e-9) for o in self.outcomes)


def concurrent_load(sides: list[Side], texts: list[str], runs: int, warmup: int = 1) -> list[Load]:
    """`warmup` uncounted rounds per side first (piper's server ran its first rounds of this load 30% slower
    than its later ones), then `runs` counted rounds, the sides taking turns."""
    for round_ in range(warmup):
        for side in sides:
            outcome = side.concurrent(texts)
            print(f"  warm-up {round_ + 1}, {side.name}: {outcome.audio_s / outcome.seconds:.1f} x real time "
                  "(not counted)", flush=True)
    loads = [Load(s.name, []) for s in sides]
    for round_ in range(runs):
        for side, load in zip(sides, loads, strict=True):
            outcome = side.concurrent(texts)
            load.outcomes.append(outcome)
            print(f"  round {round_ + 1}, {side.name}: {outcome.audio_s:.1f} s of audio in {outcome.seconds:.2f} s "
                  f"({load.rate(outcome):.1f} x real time), {outcome.cpu_s:.1f} CPU s", flush=True)
    return loads


def load_rows(loads: list[Load]) -> list[list[object]]:
    rows: list[list[object]] = []
    for load in loads:
        ratio = cpu_ratio = "-"
        if load is not loads[0]:
            ratio = f"**{loads[0].best / load.best:.2f}**"
            cpu_ratio = f"{loads[0].best_cpu / load.best_cpu:.2f}"
        rows.append([load.side, " / ".join(f"{load.rate(o):.1f}" for o in load.outcomes), f"{load.best:.1f}", ratio,
                     f"{load.best_cpu:.2f}", cpu_ratio])
    return rows


def round_trip_wer(url: str, texts: list[str], wavs: list[bytes]) -> float:
    """Corpus WER of our transcriptions of our own speech against the sentences spoken."""
    with httpx.Client(timeout=600) as http:
        heard = [transcribe(http, url, wav) for wav in wavs]
    errors = [word_errors(text, hypothesis) for text, hypothesis in zip(texts, heard, strict=True)]
    return sum(e for e, _ in errors) / max(1, sum(n for _, n in errors))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.speak", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="one round of (a)")
    parser.add_argument("--runs", type=int, default=3, help="rounds of (a), the sides taking turns (default 3)")
    parser.add_argument("--warmup", type=int, default=1, help="uncounted rounds of (a) per side first (default 1)")
    parser.add_argument("--clients", type=int, default=len(SENTENCES), help="concurrent sentences (default 16)")
    parser.add_argument("--ours-only", action="store_true", help="leave piper out (no venv is made)")
    parser.add_argument("--piper-cuda", action="store_true", help="piper's server with --cuda (on a GPU host)")
    parser.add_argument("--ours-env", action="append", default=[], metavar="NAME=VALUE",
                        help="an environment variable for our service (repeatable)")
    args = parser.parse_args(argv)
    if args.quick:
        args.runs = 1
    if any("=" not in e for e in args.ours_env):
        parser.error("--ours-env takes NAME=VALUE")
    args.ours_env = dict(e.split("=", 1) for e in args.ours_env)
    args.clients = max(1, min(args.clients, len(SENTENCES)))
    return args


def measure(args: argparse.Namespace) -> tuple[list[Load], Streamed, float]:
    texts = SENTENCES[:args.clients]
    sides = [ours(args.ours_env)]
    try:
        if not args.ours_only:
            sides.append(piper(cuda=args.piper_cuda))
        print(f"(a) {len(texts)} sentences at once, {args.runs} round(s)", flush=True)
        loads = concurrent_load(sides, texts, args.runs, args.warmup)
        for side in sides[1:]:
            side.stop()  # (b) and (c) are ours alone
        url = sides[0].server.url
        streamed = stream(url, PARAGRAPH)
        print(f"(b) {len(PARAGRAPH)} characters streamed: first audio {streamed.first_audio_s:.2f} s, "
              f"whole {streamed.whole_s:.2f} s ({streamed.audio_s:.1f} s of audio)", flush=True)
        wer = round_trip_wer(url, texts, loads[0].outcomes[-1].wavs)
        print(f"(c) round trip WER {wer:.3f}", flush=True)
    finally:
        for side in sides:
            side.stop()
    return loads, streamed, wer


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    load_before = os.getloadavg()[0]
    loads, streamed, wer = measure(args)
    load_after = os.getloadavg()[0]
    table(f"(a) {args.clients} sentences at once, one request each, WAV (target ours / piper >= {TARGET_RATIO})",
          ["side", "audio s per wall s (each round)", "best", "ours / side", "audio s per CPU s", "ours / side (CPU)"],
          load_rows(loads))
    share = streamed.first_audio_s / streamed.whole_s
    table("(b) and (c), ours", ["measure", "value", "target", "met"], [
        [f"(b) first audio / whole, {len(PARAGRAPH)} characters streamed as PCM",
         f"{streamed.first_audio_s:.2f} s / {streamed.whole_s:.2f} s = {share:.2f}", f"<= {TARGET_FIRST}",
         "yes" if share <= TARGET_FIRST else "no"],
        [f"(c) WER, {args.clients} sentences spoken then transcribed (tiny.en)", f"{wer:.3f}", f"<= {TARGET_WER}",
         "yes" if wer <= TARGET_WER else "no"],
    ])
    print(f"load average before / after: {load_before:.1f} / {load_after:.1f} on {os.cpu_count()} cores "
          f"({datetime.date.today()})")
    data = {"args": vars(args), "load_average": [load_before, load_after],
            "concurrent": [{"side": load.side, "rates": [load.rate(o) for o in load.outcomes],
                            "cpu_s": [o.cpu_s for o in load.outcomes]} for load in loads],
            "stream": vars(streamed), "wer": wer}
    save("speak", data)
    return data


if __name__ == "__main__":
    main()
