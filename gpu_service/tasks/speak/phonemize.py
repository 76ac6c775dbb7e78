"""Text to phonemes with the `espeak-ng` program, the way Piper voices were trained on them.

espeak-ng runs as a separate process (the library is GPL; its program is a tool we call), one per
call with a time limit, so this runs on a worker thread, never on the event loop. One call phonemizes
a whole batch of sentences: each clause goes in as one line of stdin (espeak-ng answers each input
line with one line of IPA, `--ipa`, no separators: what Piper's espeak bridge asks the library for).

espeak-ng's output has no punctuation, and Piper voices read it: they were trained with each clause's
terminator (`, . ; : ! ?`) after its phonemes, and a space after a `, ; :`. So clauses are cut here,
before espeak-ng sees them, and their terminators put back. Should espeak-ng answer a line with more or
fewer lines than one (it splits some clauses itself), that line's answer is read alone.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import unicodedata
from dataclasses import dataclass
from typing import Protocol

from gpu_service.errors import ServiceError, Unavailable

PROGRAM = "espeak-ng"
CLAUSE = re.compile(r"(.*?)([,;:.!?\u2026\u2014]+)[\"'\u201d\u2019)\]]*(?=\s|$)|(.+?)$", re.DOTALL)
"""A clause: its text, then its terminator (a run of punctuation that whitespace or the end follows)."""
PAUSES = ",;:"
"""Terminators inside a sentence: Piper puts a space after them."""
TERMINATOR_OF = {"\u2026": ".", "\u2014": ","}
"""Terminators written another way than the voice knows them (an ellipsis ends, a dash pauses)."""


class PhonemizerFailed(ServiceError):
    """espeak-ng failed or took too long."""

    status_code = 500


@dataclass(frozen=True)
class Clause:
    text: str
    terminator: str
    """One character (`,` `.` `?` ...), or empty when the clause ends without one."""


def clauses(sentence: str) -> list[Clause]:
    """`sentence` cut after each run of punctuation; a run is spoken as its first character."""
    found = []
    for match in CLAUSE.finditer(" ".join(sentence.split())):
        text = (match.group(1) if match.group(2) else match.group(3) or "").strip()
        run = match.group(2) or ""
        terminator = TERMINATOR_OF.get(run[:1], run[:1])
        if text or terminator:
            found.append(Clause(text, terminator))
    return found


class Phonemizer(Protocol):
    def phonemes(self, sentences: list[str]) -> list[list[str]]:
        """Each sentence's phonemes, as the voice's phoneme_id_map spells them."""
        ...


class EspeakPhonemizer:
    """Sentences -> Piper phonemes (one list of characters per sentence) with the `espeak-ng` program."""

    def __init__(self, voice: str, timeout_s: float = 30.0, program: str = PROGRAM) -> None:
        path = shutil.which(program)
        if path is None:
            raise Unavailable(
                f"{program} is not installed: speech synthesis needs the espeak-ng program for phonemes "
                "(Debian/Ubuntu: apt-get install espeak-ng; or `make speech-tools`)")
        self.program, self.voice, self.timeout_s = path, voice, timeout_s

    def phonemes(self, sentences: list[str]) -> list[list[str]]:
        """Each sentence's phonemes: espeak-ng's IPA per clause, its terminator after it (and a space after
        a pause), decomposed into code points (NFD) as Piper's voices were trained on them."""
        per_sentence = [clauses(s) for s in sentences]
        lines = [c.text for cs in per_sentence for c in cs]
        answers = iter(self._ipa(lines))
        result = []
        for cs in per_sentence:
            text = ""
            for clause in cs:
                text += next(answers) + clause.terminator + (" " if clause.terminator in PAUSES else "")
            result.append(list(unicodedata.normalize("NFD", text.strip())))
        return result

    def _ipa(self, lines: list[str]) -> list[str]:
        """One IPA string per line (empty lines answer empty)."""
        spoken = [i for i, line in enumerate(lines) if line.strip()]
        answer = self._run([lines[i] for i in spoken]) if spoken else []
        if len(answer) != len(spoken):  # espeak-ng cut a line itself: ask line by line
            answer = [" ".join(self._run([lines[i]])) for i in spoken]
        ipa = [""] * len(lines)
        for i, text in zip(spoken, answer, strict=True):
            ipa[i] = text
        return ipa

    def _run(self, lines: list[str]) -> list[str]:
        text = "".join(" ".join(line.split()) + "\n" for line in lines)
        try:
            done = subprocess.run([self.program, "-q", "--ipa", "-v", self.voice], input=text, capture_output=True,
                                  text=True, encoding="utf-8", timeout=self.timeout_s, check=False)
        except subprocess.TimeoutExpired as exc:
            raise PhonemizerFailed(f"{PROGRAM} took more than {self.timeout_s:.0f}s for {len(lines)} clauses") from exc
        if done.returncode != 0:
            raise PhonemizerFailed(f"{PROGRAM} -v {self.voice} failed ({done.returncode}): {done.stderr.strip()[:300]}")
        return [line.strip() for line in done.stdout.splitlines() if line.strip()]
