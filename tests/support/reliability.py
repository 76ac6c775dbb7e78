"""Collects what the fault, load and abuse tests measured, and writes `docs/reliability.md`.

Tests call `record(area, case, result)`, which prints the row. Only a run with
GPU_BRIDGE_WRITE_REPORTS=1 (`make soak`) rewrites the tracked table at the end, so `make test`
never changes a tracked file. The table is (re)written, merged with rows from earlier runs of other cases (so `make test`
and `make soak` each refresh their own rows).
"""

from __future__ import annotations

import datetime
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
REPORT = ROOT / "docs" / "reliability.md"
BENCH = ROOT / "bench" / "README.md"
START, END = "<!-- reliability:start -->", "<!-- reliability:end -->"
DATA = ROOT / "docs" / "reliability.json"

WRITE_ENV = "GPU_BRIDGE_WRITE_REPORTS"
"""Set to 1 to let a test run rewrite docs/reliability.md and its copy in bench/README.md."""

_rows: dict[str, dict[str, str]] = {}


def record(area: str, case: str, result: str) -> None:
    print(f"\n[{area}] {case}: {result}")
    _rows[case] = {"area": area, "case": case, "result": result,
                   "when": datetime.date.today().isoformat()}


def write() -> None:
    if not _rows:
        return
    rows = json.loads(DATA.read_text()) if DATA.exists() else {}
    rows.update(_rows)
    DATA.write_text(json.dumps(rows, indent=1, sort_keys=True) + "\n")
    order = {"fault": 0, "load": 1, "abuse": 2}
    lines = [
        "# Reliability: faults, load and abuse",
        "",
        "Written by the test suite (`tests/support/reliability.py`): every row is a test that ran against real",
        "`gpu-service` / `gpu-bridge` processes on loopback and printed what it measured. `make test` refreshes",
        "the fault and abuse rows, `make soak` the long load runs. Machine: 2 vCPUs, no GPU, CPU torch.",
        "",
        "| area | case | measured | date |",
        "|---|---|---|---|",
    ]
    table = [f"| {row['area']} | {row['case']} | {row['result']} | {row['when']} |"
             for row in sorted(rows.values(), key=lambda r: (order.get(r["area"], 9), r["case"]))]
    REPORT.write_text("\n".join(lines + table) + "\n")
    if BENCH.exists():  # the same table, between markers in bench/README.md
        text = BENCH.read_text()
        if START in text and END in text:
            head, rest = text.split(START, 1)
            tail = rest.split(END, 1)[1]
            BENCH.write_text(head + START + "\n" + "\n".join(lines[6:] + table) + "\n" + END + tail)
