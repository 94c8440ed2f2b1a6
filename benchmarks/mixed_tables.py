"""Mixed-type tables with real signal, as a user's export holds them (benchmarks/quality.py).

`make_table(kind, n_rows, seed)` returns (frame, target column, task). The target depends on
skewed numerics, categorical levels (rare ones too), a categorical x numeric interaction and
yes/no and boolean flags; the frame also holds what real exports carry along: a row-number
column, IDs, a constant, a number stored as text with stray strings, missing cells.
The effect sizes are fixed (STRUCTURE_SEED): `seed` only draws the rows.

    python benchmarks/mixed_tables.py [--rows 5000] [--seed 0]   # signal check: HGB AUC/acc/R²
"""

from __future__ import annotations

import numpy as np
import pandas as pd

STRUCTURE_SEED = 20240611
KINDS = ("mixed_binary", "mixed_multiclass", "mixed_regression", "high_cardinality")
PLANS = ("basic", "standard", "premium", "enterprise")
CHANNELS = ("web", "store", "phone", "partner", "referral")
REGIONS = tuple(f"region-{k:02d}" for k in range(1, 38))
RARE_REGIONS = {"region-97": 2, "region-98": 3, "region-99": 4}  # level: rows (< 5 each)
SEGMENTS = ("budget", "business", "family", "premium")  # mixed_multiclass classes


def make_table(kind: str, n_rows: int, seed: int) -> tuple[pd.DataFrame, str, str]:
    """(frame, target column, task) of one kind in KINDS, n_rows rows drawn from seed."""
    rng = np.random.default_rng(seed)
    if kind == "high_cardinality":
        return _high_cardinality(rng, n_rows)
    k = {"mixed_binary": 1, "mixed_multiclass": len(SEGMENTS), "mixed_regression": 1}.get(kind)
    if k is None:
        raise ValueError(f"unknown kind {kind!r}; one of {', '.join(KINDS)}")
    frame = _customers(rng, n_rows)
    score = _score(frame, _effects(k, np.random.default_rng(STRUCTURE_SEED + k)))
    if kind == "mixed_binary":
        target, task, values = "churn", "binary", _binary(rng, score[:, 0], 2.5)
    elif kind == "mixed_multiclass":
        gumbel = rng.gumbel(size=score.shape)
        target, task = "segment", "multiclass"
        values = np.asarray(SEGMENTS)[np.argmax(2.0 * score + gumbel, axis=1)]
    else:
        target, task, values = "annual_value", "regression", _continuous(rng, score[:, 0], 0.1)
    return _dress(rng, frame, target, values), target, task


def _zipf(rng: np.random.Generator, n: int, levels: int, exponent: float) -> np.ndarray:
    """Level indices 0..levels-1 with frequencies ~ 1 / rank**exponent (index 0 most common)."""
    p = 1.0 / np.arange(1, levels + 1) ** exponent
    return rng.choice(levels, size=n, p=p / p.sum())


def _customers(rng: np.random.Generator, n: int) -> pd.DataFrame:
    """The clean columns the target is computed from (before missing cells and text)."""
    plan = rng.choice(len(PLANS), size=n, p=[0.4, 0.3, 0.2, 0.1])
    usage = rng.gamma(2.0, 10.0, n) * (1 + 0.3 * plan)
    region = np.asarray(REGIONS, dtype=object)[_zipf(rng, n, len(REGIONS), 1.0)]
    rows = rng.permutation(n)
    start = 0
    for level, count in RARE_REGIONS.items():
        region[rows[start : start + count]] = level
        start += count
    return pd.DataFrame(
        {
            "age": np.clip(rng.normal(42, 13, n), 18, 90).round().astype(int),
            "income": rng.lognormal(np.log(55_000), 0.6, n).round(-2),
            "balance": (300 + 800 * rng.standard_t(2, n)).round(2),  # heavy tails both ways
            "tenure_months": np.minimum(rng.geometric(1 / 30, n), 240),
            "support_calls": rng.poisson(1.5, n),
            "usage_hours": usage.round(1),
            "plan": np.asarray(PLANS)[plan],
            "region": region,
            "channel": rng.choice(CHANNELS, size=n, p=[0.45, 0.25, 0.15, 0.1, 0.05]),
            "auto_renew": np.where(rng.random(n) < 0.55, "yes", "no"),
            "paperless": rng.random(n) < 0.6,
            "annual_spend": (usage * 40 * rng.lognormal(0, 0.4, n) + 200).round(),
        }
    )


def _effects(k: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Effect sizes for k outputs: numeric weights, per-level effects, per-plan usage slopes."""
    return {
        "numeric": rng.normal(0, 0.45, (6, k)),
        "plan": rng.normal(0, 0.6, (len(PLANS), k)),
        "region": rng.normal(0, 0.7, (len(REGIONS) + len(RARE_REGIONS), k)),
        "channel": rng.normal(0, 0.4, (len(CHANNELS), k)),
        "flags": rng.normal(0, 0.5, (2, k)),  # auto_renew == "yes", paperless
        "usage_by_plan": rng.normal(0, 0.9, (len(PLANS), k)),  # the interaction
    }


def _standard(x) -> np.ndarray:
    x = np.asarray(x, dtype=float)
    return (x - x.mean()) / (x.std() + 1e-12)


def _score(frame: pd.DataFrame, effects: dict[str, np.ndarray]) -> np.ndarray:
    """n x k latent scores: numeric terms (some non-linear) + level effects + interaction."""
    terms = np.column_stack(
        [
            _standard(((frame["age"] - 45) / 15) ** 2),  # U-shaped in age
            _standard(np.log(frame["income"])),
            _standard(np.sign(frame["balance"]) * np.log1p(np.abs(frame["balance"]) / 100)),
            _standard(np.log1p(frame["tenure_months"])),
            _standard(np.minimum(frame["support_calls"], 6)),
            _standard(np.log(frame["annual_spend"])),
        ]
    )
    plan = pd.Categorical(frame["plan"], categories=PLANS).codes
    levels = (*REGIONS, *RARE_REGIONS)
    region = pd.Categorical(frame["region"], categories=levels).codes
    channel = pd.Categorical(frame["channel"], categories=CHANNELS).codes
    flags = np.column_stack([frame["auto_renew"] == "yes", frame["paperless"]]).astype(float)
    usage = _standard(np.log(frame["usage_hours"] + 1))[:, None]
    return (
        terms @ effects["numeric"]
        + effects["plan"][plan]
        + effects["region"][region]
        + effects["channel"][channel]
        + flags @ effects["flags"]
        + usage * effects["usage_by_plan"][plan]
    )


def _binary(rng: np.random.Generator, score: np.ndarray, scale: float) -> np.ndarray:
    """ "yes" for ~30% of rows: the top of score * scale + logistic noise."""
    noisy = scale * _standard(score) + rng.logistic(size=len(score))
    return np.where(noisy > np.quantile(noisy, 0.7), "yes", "no")


def _continuous(rng: np.random.Generator, score: np.ndarray, noise_share: float) -> np.ndarray:
    """A positive, right-skewed amount; noise_share of its log's variance is noise."""
    signal = np.sqrt(1 - noise_share) * _standard(score)
    noise = np.sqrt(noise_share) * rng.standard_normal(len(score))
    return np.round(800 * np.exp(0.45 * (signal + noise)), 2)


def _dress(
    rng: np.random.Generator, clean: pd.DataFrame, target: str, y: np.ndarray
) -> pd.DataFrame:
    """The export: row numbers first, an ID, missing cells, a constant, spend as text."""
    n = len(clean)
    frame = clean.copy()
    frame["income"] = frame["income"].mask(rng.random(n) < 0.05)
    frame["region"] = frame["region"].mask(rng.random(n) < 0.02)
    frame["channel"] = frame["channel"].mask(rng.random(n) < 0.03)
    spend = [f"{v:,.0f}" for v in frame["annual_spend"]]  # "1,234"
    for i in np.flatnonzero(rng.random(n) < 0.01):
        spend[i] = rng.choice(["n/a", "?", "-"])
    frame["annual_spend"] = spend
    ids = [f"cust-{k:06d}" for k in rng.choice(1_000_000, size=n, replace=False)]
    frame.insert(0, "customer_id", ids)
    frame.insert(0, "Unnamed: 0", np.arange(n))
    frame.insert(frame.columns.get_loc("paperless") + 1, "country", "US")
    frame[target] = y
    return frame


def _high_cardinality(rng: np.random.Generator, n: int) -> tuple[pd.DataFrame, str, str]:
    """~1000 merchants (Zipf frequencies, one effect each) and a few numerics; binary target."""
    structure = np.random.default_rng(STRUCTURE_SEED)
    levels = 1000
    names = np.asarray([f"m-{code:04d}" for code in structure.permutation(levels)], dtype=object)
    merchant_effect = structure.normal(0, 1.0, levels)
    merchant = _zipf(rng, n, levels, 1.05)
    amount = rng.lognormal(3.5, 1.0, n).round(2)
    hour = rng.integers(0, 24, n)
    account_days = np.minimum(rng.exponential(400, n), 3650).round()
    items = 1 + rng.poisson(1.2, n)
    score = (
        1.3 * merchant_effect[merchant]
        + 0.5 * _standard(np.log(amount))
        + 0.6 * np.cos(2 * np.pi * (hour - 20) / 24)  # evenings convert
        - 0.4 * _standard(np.log1p(account_days))
        + 0.3 * _standard(np.minimum(items, 5))
    )
    frame = pd.DataFrame(
        {
            "merchant": names[merchant],
            "amount": amount,
            "hour": hour,
            "account_age_days": account_days,
            "n_items": items,
            "converted": _binary(rng, score, 2.5),
        }
    )
    return frame, "converted", "binary"


def signal_check(n_rows: int, seed: int) -> None:
    """HGB on each kind (70/30 split) with every column vs without the categorical ones."""
    from quality_contenders import hand_cleaned, hgb_fit_score

    for kind in KINDS:
        frame, target, task = make_table(
            kind, n_rows * (4 if kind == "high_cardinality" else 1), seed
        )
        x, y = hand_cleaned(frame.drop(columns=[target])), frame[target].to_numpy()
        cut = int(0.7 * len(x))
        numeric = x.select_dtypes(exclude="category").columns
        scores = [
            hgb_fit_score(cols[:cut], y[:cut], cols[cut:], y[cut:], task, seed)[0]
            for cols in (x, x[numeric])
        ]
        print(f"{kind:<18} {task:<10} all columns {scores[0]:.4f}  numeric only {scores[1]:.4f}")


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=5000, help="high_cardinality gets 4x")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    signal_check(args.rows, args.seed)
