"""Time to retrain Duke on 1k, 10k and 100k outcomes.

Usage: ``python benchmarks/training_time.py [--sizes 1000 10000 100000]``

Outcomes are RouterBench (prompt, model, recorded success) triples drawn with replacement from the
full-information train table; beyond its 24,475 distinct triples, prompts get a numbered suffix so
the texts stay distinct. Prints the wall time of ``DukeRouter.fit`` (median of 3 runs below 100k,
one run at 100k) and of the held-out evaluation, on one thread. Target from the issue: 100k in
under 60 s on 2 cores. No assertion: it prints figures.
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np

from dukenet.learning.evaluation import classifier_metrics, held_out_split
from dukenet.learning.features import TaskFeatures
from dukenet.learning.router import DukeRouter, OutcomeSample, RouterConfig
from dukenet.learning.routerbench import complexity_of, load_routerbench


def outcomes(n: int, seed: int = 0) -> list[OutcomeSample]:
    """Return ``n`` bandit-style outcomes (one agent per task) drawn from RouterBench train."""
    table = load_routerbench("train")
    rng = np.random.default_rng(seed)
    rows = rng.integers(0, table.n_prompts, size=n)
    cols = rng.integers(0, len(table.agents), size=n)
    samples = []
    for k, (i, j) in enumerate(zip(rows, cols, strict=True)):
        suffix = (
            ""
            if n <= table.n_prompts * len(table.agents)
            else f"\n(variant {k // table.n_prompts})"
        )
        samples.append(
            OutcomeSample(
                task_id=table.task_ids[i],  # split by prompt: no prompt on both sides
                description=table.prompts[i] + suffix,
                complexity=complexity_of(table.prompts[i]),
                agent=table.agents[j],
                success=bool(table.success[i, j]),
            )
        )
    return samples


def measure(n: int, repeats: int) -> dict[str, float]:
    """Fit on the train side of the held-out split of ``n`` outcomes; return timings in s."""
    samples = outcomes(n)
    train, test = held_out_split(samples)
    fits = []
    router = None
    for _ in range(repeats):
        started = time.perf_counter()
        router = DukeRouter.fit(train, RouterConfig())
        fits.append(time.perf_counter() - started)
    assert router is not None
    started = time.perf_counter()
    agents = sorted({s.agent for s in test})
    col = {a: k for k, a in enumerate(agents)}
    p = router.predict_proba([TaskFeatures(s.description, s.complexity) for s in test], agents)
    pair = p[np.arange(len(test)), [col[s.agent] for s in test]]
    metrics = classifier_metrics(np.array([s.success for s in test]), pair)
    evaluate_s = time.perf_counter() - started
    return {
        "n": n,
        "n_train": len(train),
        "fit_s": float(np.median(fits)),
        "evaluate_s": evaluate_s,
        "auc": metrics["roc_auc"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1_000, 10_000, 100_000])
    args = parser.parse_args()
    print(f"{'outcomes':>9} {'train':>8} {'fit s':>8} {'eval s':>8} {'held-out AUC':>13}")
    for n in args.sizes:
        r = measure(n, repeats=1 if n >= 100_000 else 3)
        print(
            f"{r['n']:>9} {r['n_train']:>8} {r['fit_s']:>8.2f} {r['evaluate_s']:>8.2f} "
            f"{r['auc']:>13.3f}"
        )
    print("target: 100k outcomes in under 60 s")


if __name__ == "__main__":
    main()
