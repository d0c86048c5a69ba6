"""The two-modes rule (hfmagic.core.stats.two_modes) on synthetic samples, and the row fields that keep
the modes (issue 25, item 3): clusters found with their medians and shares; a long right tail (a busy
machine), a few outliers and two modes too close to tell apart are not called bimodal; rows stored
before the modes read back as they were."""

import json

import numpy as np
import pytest

from hfmagic.core.records import BenchmarkRow, field_of
from hfmagic.core.stats import modes_text, two_modes

SEEDS = range(10)


# -- the rule, on synthetic samples -----------------------------------------------------------------
def bimodal(rng, n):
    fast = int(0.6 * n)
    return np.r_[rng.normal(14.5, 0.4, fast), rng.normal(22.0, 0.8, n - fast)]


@pytest.mark.parametrize("n", [30, 100, 300])
def test_two_clusters_are_found_with_their_medians_and_shares(n):
    for seed in SEEDS:
        found = two_modes(bimodal(np.random.default_rng(seed), n))
        assert found is not None, seed
        (fast, slow), (share_fast, share_slow) = found["modes_ms"], found["mode_shares"]
        assert fast == pytest.approx(14.5, abs=0.3) and slow == pytest.approx(22.0, abs=0.6)
        assert share_fast == pytest.approx(0.6, abs=0.01) and share_fast + share_slow == pytest.approx(1.0)


ONE_MODE = {
    "normal": lambda rng, n: rng.normal(15.0, 0.6, n),
    "wide normal": lambda rng, n: rng.normal(15.0, 2.0, n),
    "lognormal long tail": lambda rng, n: 14.0 * np.exp(rng.normal(0.0, 0.5, n)),
    # a busy machine: most runs at full speed, a quarter slowed by anything from nothing to a lot
    "busy machine's tail": lambda rng, n: np.where(rng.random(n) < 0.25, 14.5 + rng.exponential(4.0, n),
                                                    rng.normal(14.5, 0.3, n)),
    "three outliers": lambda rng, n: np.r_[rng.normal(15.0, 0.5, n - 3), [40.0, 55.0, 70.0]],
    "two modes too close": lambda rng, n: np.r_[rng.normal(14.5, 0.5, n * 6 // 10), rng.normal(15.0, 0.5, n - n * 6 // 10)],
}


@pytest.mark.parametrize("n", [10, 30, 300])
@pytest.mark.parametrize("case", sorted(ONE_MODE))
def test_one_mode_is_never_called_two(case, n):
    for seed in SEEDS:
        assert two_modes(ONE_MODE[case](np.random.default_rng(seed), n)) is None, (case, n, seed)


def test_too_few_runs_and_steady_runs_are_one_mode():
    rng = np.random.default_rng(0)
    assert two_modes([14.5] * 5 + [22.0] * 4) is None  # nine runs cannot show two modes
    assert two_modes(rng.normal(15.0, 0.01, 300)) is None  # within 10%: no fit is needed to say so
    assert two_modes([]) is None


def test_a_row_stored_before_the_modes_reads_back_as_it_was():
    """modes_ms and mode_shares are keys only of a row that has two modes: rows stored without them
    (every row before this change, every row with one mode) read back unchanged, as None."""
    stored = {**dict.fromkeys(k for k in BenchmarkRow.FIELDS if k not in BenchmarkRow.GIVEN_ONLY),
              "variant": "fp32", "p50_ms": 15.0, "status": "ok"}
    row = BenchmarkRow.from_dict(stored)
    assert row.to_dict() == stored and row.get("modes_ms") is None and row.modes_ms is None
    assert field_of("p50_ms").write(row) == "15.00"
    both = BenchmarkRow.from_dict({**stored, "modes_ms": [14.5, 22.0], "mode_shares": [0.6, 0.4]})
    assert json.loads(json.dumps(both.to_dict()))["modes_ms"] == [14.5, 22.0]
    assert field_of("p50_ms").write(both) == "15.00 (2 modes)"
    assert modes_text(both) == "14.5 ms (60%) and 22.0 ms (40%)"
    assert field_of("modes_ms").doc and field_of("mode_shares").doc
