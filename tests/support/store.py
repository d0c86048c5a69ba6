"""Run-store helpers: the recorded fixtures, runs written straight into a store, a store file damaged
on purpose, and how many runs the default store holds."""

from __future__ import annotations

import json
from pathlib import Path

from hfmagic.store.db import RunStore

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"

# the params and rows that hfmagic recorded before the records were declared (tests/fixtures/records)
RECORDED = json.loads((FIXTURES / "records" / "recorded.json").read_text())
# the row keys declared since then, each with its issue: a row written now has these too
ADDED_SINCE_RECORDED = {"pp_tokens_per_s", "tg_tokens_per_s"}  # issue 26: llama-bench's pp and tg figures


# -- runs and compare through a real shell, on runs recorded here -----------------------------------
def record(store, kind, params, rows, env_change=None, provenance=None):
    from hfmagic.core.envcard import environment_card

    env = environment_card()
    env.update(env_change or {})
    run = store.start(kind, params, provenance or {"model": {"name": "tiny", "source": "x"}}, env)
    for row in rows:
        run.add_row(row)
    run.finish("ok")
    return run.id


def many_runs(store: RunStore, n: int = 30) -> list[str]:
    """Runs of every kind with rows big enough that the file spans many pages."""
    ids = []
    for i in range(n):
        kind = ("export", "benchmark", "evaluate")[i % 3]
        run = store.start(kind, {"i": i}, {"model": {"name": "tiny", "source": "x", "weights_sha256": "ab" * 32}},
                          {"cpu": "c" * 2000})
        for j in range(4):
            run.add_row({"variant": "fp32", "backend": "onnxruntime", "batch_size": j, "seq_len": 8, "status": "ok",
                         "p50_ms": 1.0 + j, "samples_ms": [1.0] * 200})
        run.finish("ok")
        ids.append(run.id)
    return ids


def truncate(path: Path, share: float = 0.6) -> bytes:
    assert not Path(f"{path}-wal").exists()  # every commit is in the file itself: the cut loses real pages
    with open(path, "r+b") as fh:
        fh.truncate(int(path.stat().st_size * share))
    return path.read_bytes()


def aside(path: Path) -> Path:
    (moved,) = path.parent.glob(f"{path.name}.damaged-*")
    return moved


def runs_in_store():
    from hfmagic.store.db import default_store

    return len(default_store().runs(kind="benchmark"))
