"""How fast a model works off its queue, measured from the batches it runs.

Two measures, each for its own question, both taken from batch-class batches only (bulk work, the batches they
size): a batch of one query is mostly a forward pass's fixed cost, 20 to 40 times a bulk batch's cost per token,
and counting it would shrink the next bulk batches and make the backlog look many times longer than it is.
- seconds per padded token (an average over the last batches): how many tokens a batch may hold to stay within
  its target duration (batching.py bounds a batch-class batch so an interactive item never waits long);
- real tokens per device second (the median of the last batches': the first batches of a new process, and of
  each new shape, run several times slower while the math library prepares its kernels, and a mean would carry
  that for minutes): how long the work queued now takes to finish, which tells an overloaded caller when to come
  back, and a caller with a deadline that its request would not finish in time.
"""

from __future__ import annotations

import collections
import statistics
from dataclasses import dataclass, field

RATE_BATCHES = 16
"""The rate is the median over this many of the last batch-class batches."""
RATE_MIN_BATCHES = 3
"""Before this many batch-class batches ran, the rate is not known."""


@dataclass
class BatchStats:
    batches: int = 0
    """Batches run so far (/status)."""
    oom_splits: int = 0
    s_per_token: float = 0.0
    """Average device seconds per padded token (the last few batches weigh most)."""
    _rates: collections.deque[float] = field(default_factory=lambda: collections.deque(maxlen=RATE_BATCHES))

    def record(self, tokens: int, padded: int, elapsed: float, alongside: int = 1, *, bulk: bool = True) -> None:
        """A batch of `tokens` real tokens (`padded` with padding) took `elapsed` seconds while `alongside` batches,
        itself included, ran at once (the rate is the model's, not one worker's). `bulk`: a batch-class batch
        (only those are measured)."""
        self.batches += 1
        if not bulk:
            return
        per_token = elapsed / max(padded, 1)
        self.s_per_token = per_token if self.s_per_token == 0 else 0.8 * self.s_per_token + 0.2 * per_token
        self._rates.append(max(1, alongside) * tokens / max(elapsed, 1e-6))

    @property
    def tokens_per_s(self) -> float:
        """Real tokens the model works off per second of its time; 0 before `RATE_MIN_BATCHES` batch-class batches."""
        return statistics.median(self._rates) if len(self._rates) >= RATE_MIN_BATCHES else 0.0

    def seconds_for(self, tokens: int) -> float | None:
        """How long `tokens` real tokens of queued work take at the measured rate; None before it was measured."""
        rate = self.tokens_per_s
        return tokens / rate if rate > 0 else None
