"""Figures from raw latency samples: percentiles, spread, noise flags, and speed-up intervals.

Every figure a benchmark row shows is computed here from the raw samples the row keeps
(``samples_ms``), so anyone can recompute it: percentiles are numpy's (linear interpolation),
``std`` is the sample standard deviation (ddof=1), throughput is work done over time spent
(batch x runs / sum of latencies). The speed-up is the ratio of medians, baseline over this
row, with a percentile-bootstrap 95% interval from scipy (the two sample sets resampled
independently). Where the runs form two clusters (a configuration that runs at one speed or
another, as dynamic int8 can), :func:`two_modes` finds them, so the rows report both modes beside
the p50 instead of averaging them away.
"""

from __future__ import annotations

from typing import Sequence

NOISY_CV = 0.10        # coefficient of variation above which a row is called noisy
NOISY_SPREAD = 4.0     # slowest over fastest above which a row is called noisy
BOOTSTRAP_RESAMPLES = 2000


def summarize(samples_ms: Sequence[float], batch_size: int) -> dict:
    """Latency and throughput figures of one configuration from its raw samples (ms); the task
    adds its own throughput per unit (tokens/s for text: ``Task.throughput``)."""
    import numpy as np

    x = np.asarray(samples_ms, dtype=float)
    if x.size == 0:
        raise ValueError("no samples to summarize")
    mean = float(x.mean())
    std = float(x.std(ddof=1)) if x.size > 1 else 0.0
    p50, p90, p95, p99 = (float(v) for v in np.percentile(x, [50, 90, 95, 99]))
    samples_per_s = batch_size * x.size / (float(x.sum()) / 1000.0)
    return {
        "mean_ms": mean, "std_ms": std, "p50_ms": p50, "p90_ms": p90, "p95_ms": p95, "p99_ms": p99,
        "min_ms": float(x.min()), "max_ms": float(x.max()), "cv": std / mean if mean else 0.0,
        "runs": int(x.size), "samples_per_s": samples_per_s,
    }


def noise(figures: dict) -> list[str]:
    """Why a row's timings are not steady (empty when they are)."""
    out = []
    if figures["cv"] > NOISY_CV:
        out.append(f"CV {figures['cv']:.0%} > {NOISY_CV:.0%}")
    if figures["min_ms"] > 0 and figures["max_ms"] > NOISY_SPREAD * figures["min_ms"]:
        out.append(f"slowest {figures['max_ms'] / figures['min_ms']:.1f}x the fastest")
    return out


def speedup(baseline_ms: Sequence[float], samples_ms: Sequence[float], confidence: float = 0.95,
            seed: int = 0) -> tuple[float, float | None, float | None]:
    """median(baseline) / median(samples) with a bootstrap interval: (ratio, low, high).

    With fewer than two samples on either side there is no interval (low and high are None).
    """
    import numpy as np

    base, this = np.asarray(baseline_ms, dtype=float), np.asarray(samples_ms, dtype=float)
    ratio = float(np.median(base) / np.median(this))
    if base.size < 2 or this.size < 2:
        return ratio, None, None
    from scipy.stats import bootstrap

    def ratio_of_medians(a, b, axis=-1):
        return np.median(a, axis=axis) / np.median(b, axis=axis)

    result = bootstrap((base, this), ratio_of_medians, vectorized=True, paired=False,
                       n_resamples=BOOTSTRAP_RESAMPLES, confidence_level=confidence,
                       method="percentile", batch=max(1, 2_000_000 // (base.size + this.size)),
                       rng=np.random.default_rng(seed))
    low, high = result.confidence_interval
    return ratio, float(low), float(high)


# -- interleaved rounds: paired speed-ups ------------------------------------------------------------
DISTURBED = 1.25   # a round's slice is disturbed when its median is over 1.25x the configuration's best
MIN_CLEAN = 5      # clean rounds a paired speed-up needs to be called trustworthy


def slice_medians(samples_ms: Sequence[float], rounds: Sequence[int]) -> dict[int, float]:
    """Round -> the median of the samples that round's slice measured."""
    import numpy as np

    by_round: dict[int, list[float]] = {}
    for value, r in zip(samples_ms, rounds):
        by_round.setdefault(int(r), []).append(float(value))
    return {r: float(np.median(v)) for r, v in sorted(by_round.items())}


def disturbed(medians: dict[int, float], factor: float = DISTURBED) -> set[int]:
    """The rounds whose slice ran far slower than this configuration's best slice."""
    if not medians:
        return set()
    best = min(medians.values())
    return {r for r, m in medians.items() if m > factor * best}


def paired_speedup(base: dict[int, float], this: dict[int, float], skip: set[int] = frozenset(),
                   confidence: float = 0.95, resamples: int = BOOTSTRAP_RESAMPLES, seed: int = 0) -> dict:
    """The speed-up from the rounds both configurations measured: per round, the baseline's slice
    median over this one's (measured seconds apart, so a load that comes and goes hits both); the
    estimate is their geometric mean, its interval a percentile bootstrap over whole rounds.

    ``skip``: disturbed rounds, left out when at least MIN_CLEAN clean pairs remain (``clean`` says
    whether they were); with fewer, every pair is used and ``trust`` is False."""
    import numpy as np

    pairs = sorted(set(base) & set(this))
    clean = [r for r in pairs if r not in skip]
    used = clean if len(clean) >= MIN_CLEAN else pairs
    out = {"ratio": None, "low": None, "high": None, "rounds": len(pairs), "rounds_used": len(used),
           "clean": used is clean, "trust": len(clean) >= MIN_CLEAN}
    if not used:
        return out
    logs = np.log(np.array([base[r] / this[r] for r in used]))
    out["ratio"] = float(np.exp(logs.mean()))
    if len(used) >= 2:
        rng = np.random.default_rng(seed)
        means = logs[rng.integers(0, len(logs), size=(resamples, len(logs)))].mean(1)
        alpha = (1 - confidence) / 2 * 100
        low, high = np.exp(np.percentile(means, [alpha, 100 - alpha]))
        out["low"], out["high"] = float(low), float(high)
    return out


def speedup_of(base: dict, row: dict) -> dict:
    """The speed-up of benchmark row ``row`` against ``base`` (same sweep, same shape, same node), from
    their raw samples, as the sweep computes it: paired by round where both were measured in
    interleaved rounds (``sample_rounds``; :func:`paired_speedup` over the clean rounds of both),
    else the ratio of medians with a bootstrap interval (:func:`speedup`). Keys: ``speedup``,
    ``speedup_low``, ``speedup_high``, ``speedup_rounds`` and ``speedup_trust`` (None where not
    paired: a sequential sweep's figure has no rounds to count)."""
    if base.get("sample_rounds") and row.get("sample_rounds"):
        mb = slice_medians(base["samples_ms"], base["sample_rounds"])
        mr = slice_medians(row["samples_ms"], row["sample_rounds"])
        found = paired_speedup(mb, mr, disturbed(mb) | disturbed(mr))
        return {"speedup": found["ratio"], "speedup_low": found["low"], "speedup_high": found["high"],
                "speedup_rounds": found["rounds_used"], "speedup_trust": found["trust"]}
    ratio, low, high = speedup(base["samples_ms"], row["samples_ms"])
    return {"speedup": ratio, "speedup_low": low, "speedup_high": high, "speedup_rounds": None,
            "speedup_trust": None}


def speedup_text(row: dict) -> str | None:
    """A speed-up as every view writes it: ``1.63x [1.58, 1.67]``; ``6.36x (not trustworthy: 3
    rounds)`` where too few clean paired rounds give it no trustworthy interval; ``1.63x`` where it
    has no interval."""
    if row.get("speedup") is None:
        return None
    if row.get("speedup_trust") is False:
        return f"{row['speedup']:.2f}x (not trustworthy: {row.get('speedup_rounds')} rounds)"
    if row.get("speedup_low") is None:
        return f"{row['speedup']:.2f}x"
    return f"{row['speedup']:.2f}x [{row['speedup_low']:.2f}, {row['speedup_high']:.2f}]"


# -- two modes -------------------------------------------------------------------------------------
MODE_MIN_RUNS = 5      # runs each mode holds at least (five with nothing between can show a trough)
MODE_MIN_SHARE = 0.10  # and this share of the runs: a few outliers are not a mode
MODE_GAP = 1.10        # the slower mode's median over the faster's: modes closer are not reported
MODE_BIC = 10.0        # two Gaussians must beat one by this much BIC ("very strong", Kass & Raftery 1995)
MODE_SEPARATION = 2.0  # Ashman's D the two must exceed: apart by more than their spreads
MODE_TROUGH_P = 0.05   # the trough between them: one-sided binomial test against the emptier mode


def two_modes(samples_ms: Sequence[float]) -> dict | None:
    """Whether a configuration's runs form two clusters: ``{"modes_ms": [fast, slow], "mode_shares":
    [share, share]}`` (each cluster's median and its share of the runs), else None.

    The rule, in order (every step must hold):

    1. two Gaussians fit the log latencies better than one: scikit-learn's ``GaussianMixture`` with
       1 and 2 components, the BIC lower by over ``MODE_BIC`` with two. Logs, because latencies are
       skewed: a lognormal right tail is one Gaussian there;
    2. each cluster holds at least ``MODE_MIN_RUNS`` runs and ``MODE_MIN_SHARE`` of them, so a few
       outliers never make a mode;
    3. the two are apart by more than their spreads: Ashman's D (|mu1 - mu2| sqrt(2) over
       sqrt(s1^2 + s2^2), on the logs) over ``MODE_SEPARATION``, below which a mixture of two
       Gaussians is not clearly two; and the slower median is at least ``MODE_GAP`` times the faster;
    4. there is a trough between them in the samples themselves (in ms): fewer runs in the band
       half-way between the two medians than in the same-width band around the emptier mode, by a
       one-sided binomial test at ``MODE_TROUGH_P``. A Gaussian mixture fits a long tail (a busy
       machine's one-sided slowness) with a broad second component too, and passes 1-3; a tail's
       density falls away from the mode, so it has no trough and fails here. In ms, not on logs: a
       flat shelf of slow runs would rise on the log scale and look like a mode. (Hartigan's dip
       test asks the same question of the whole distribution; no maintained package of it is a
       dependency, and steps 1-3 are needed anyway to say where the modes are.)

    On synthetic samples (40 draws each of 10, 20, 50, 100 and 300 runs; docs/benchmark.md): a 60/40
    mix of 14.5 ms and 22 ms is found from 20 runs on; normal, lognormal, exponential-tail and gamma
    samples, three outliers and two modes 0.5 ms apart never were. Fewer than 10 runs are never
    called bimodal (the trough test cannot reach 5% on fewer than 5 runs a mode). The two fits take
    a few milliseconds (scikit-learn's k-means++ start, not its full k-means, which took 70 ms);
    samples within 10% of each other skip them."""
    import numpy as np

    x = np.asarray(samples_ms, dtype=float)
    if x.size < 2 * MODE_MIN_RUNS or x.min() <= 0 or x.max() < MODE_GAP * x.min():
        return None
    import warnings

    from scipy.stats import binom
    from sklearn.mixture import GaussianMixture

    y = np.log(x).reshape(-1, 1)
    with warnings.catch_warnings():  # a fit that stops at its iteration limit is still a fit
        warnings.simplefilter("ignore")
        one = GaussianMixture(1, init_params="k-means++", random_state=0).fit(y)
        two = GaussianMixture(2, init_params="k-means++", random_state=0,
                              means_init=np.percentile(y, [20, 80]).reshape(-1, 1)).fit(y)
    if one.bic(y) - two.bic(y) <= MODE_BIC:
        return None
    order = np.argsort(two.means_.ravel())
    labels = two.predict(y)
    groups = [x[labels == k] for k in order]
    if min(g.size for g in groups) < max(MODE_MIN_RUNS, MODE_MIN_SHARE * x.size):
        return None
    mu, var = two.means_.ravel()[order], two.covariances_.ravel()[order]
    if np.sqrt(2) * (mu[1] - mu[0]) / np.sqrt(var.sum()) <= MODE_SEPARATION:
        return None
    fast, slow = (float(np.median(g)) for g in groups)
    if slow < MODE_GAP * fast:
        return None
    half = (slow - fast) / 4  # three bands of a half gap each: around each median and half-way between
    around = [int(np.sum(np.abs(x - c) <= half)) for c in (fast, (fast + slow) / 2, slow)]
    emptier = min(around[0], around[2])
    if binom.cdf(around[1], around[1] + emptier, 0.5) >= MODE_TROUGH_P:
        return None
    return {"modes_ms": [fast, slow], "mode_shares": [g.size / x.size for g in groups]}


def modes_text(row: dict) -> str | None:
    """A row's two modes as every view writes them: ``14.5 ms (60%) and 22.0 ms (40%)``; None for
    a row with one."""
    modes, shares = row.get("modes_ms"), row.get("mode_shares")
    if not modes or not shares:
        return None
    return " and ".join(f"{m:.{1 if m >= 10 else 2}f} ms ({s:.0%})" for m, s in zip(modes, shares))


def modes_note(label: str, row: dict) -> str | None:
    """The note under a table for a row whose runs form two modes (None for one that does not):
    what its p50 and speed-up are, and what a run costs."""
    text = modes_text(row)
    if text is None:
        return None
    return (f"{label}: two modes, {text}: p50 and the speed-up are over both (the median of all its runs); "
            "a run costs one or the other")


def p50_text(row: dict) -> str | None:
    """A row's p50 as every table writes it: ``18.20``; ``18.20 (2 modes)`` where its runs form two
    modes (:func:`two_modes`; a note gives them)."""
    if row.get("p50_ms") is None:
        return None
    return f"{row['p50_ms']:.2f}" + (" (2 modes)" if row.get("modes_ms") else "")
