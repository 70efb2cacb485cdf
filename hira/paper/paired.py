"""Paired comparison of two groups of runs scored on the same questions: numpy and scipy only.

Input per test subset: the 0/1 outcomes of group A and of group B as arrays shaped (seeds, questions), the same
questions in the same order in both. Output per subset and for the macro average over subsets:

- diff: B − A in accuracy points (each group's accuracy is its mean over seeds and questions);
- a 95 % interval from a paired, hierarchical bootstrap. One replicate draws the seeds of each group with
  replacement, independently (a group's seeds are its own training runs), then draws the questions with
  replacement, the same questions for both groups (they answered the same ones). One seed draw per replicate is
  shared by every subset (a run answers all of them), so the average's interval carries the seeds' correlation
  across subsets. Questions and seeds are both random effects: the interval speaks for other questions like these
  and other training seeds. The crossed bootstrap's spread is biased both ways (it counts each seed's answer noise
  twice, once among seeds and once among questions, and n seeds drawn with replacement vary (n − 1)/n as much as
  new seeds), so its deviations keep their shape but are rescaled to the moment estimate of the variance below,
  and widened by t over normal at the interval's level: the interval is the estimate plus their percentiles.
- a two-sided p-value: with one seed in each group, McNemar's exact test (the binomial test of c = questions B got
  right and A wrong, of the b + c where they disagree, p = 0.5). Otherwise a Welch-Satterthwaite t on the moment
  estimate of Var(B − A): each group's seed variance of its mean (split into the answer noise, from the seed x
  question table's residual mean square with many degrees of freedom, and the seed effect proper, the rest, with
  few) plus the questions' part (the per-question differences' variance beyond that noise, over the questions).
  With 2 or 3 seeds the seed part is itself uncertain, and a normal reference rejects too often (10-15 % at a
  nominal 5 % in tests/test_compare.py's simulation; this t: 1-7 % across seed-noise levels).
- Holm's step-down correction across the subsets, and whether each difference survives it at alpha. The macro
  average is the one headline test, not part of Holm's family: its p_holm is its own p and `significant` is
  p <= alpha. (With one seed each the average's p is the t above with its question part only.)
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from scipy.stats import binomtest, norm
from scipy.stats import t as t_dist

ALPHA = 0.05
LEVEL = 0.95
RESAMPLES = 10_000
SEED = 0
AVERAGE = "average"
CHUNK_ELEMENTS = 4_000_000  # numbers per bootstrap chunk and group: bounds memory on large test sets


@dataclass
class Comparison:
    """One subset's (or the average's) paired comparison, B − A in points."""
    diff: float
    ci_low: float
    ci_high: float
    p: float
    p_holm: float
    significant: bool
    n_questions: int
    seeds_a: int
    seeds_b: int

    def as_dict(self) -> dict:
        return asdict(self)


def as_outcomes(values, name: str) -> np.ndarray:
    """A (seeds, questions) float array of 0/1 outcomes; a 1-D array is one seed."""
    array = np.asarray(values, dtype=float)
    if array.ndim == 1:
        array = array[None, :]
    if array.ndim != 2 or array.shape[0] == 0 or array.shape[1] == 0:
        raise ValueError(f"{name}: outcomes must be shaped (seeds, questions), got {array.shape}")
    if not np.isin(array, (0.0, 1.0)).all():
        raise ValueError(f"{name}: outcomes must be 0 or 1")
    return array


def holm(p_values: list[float]) -> list[float]:
    """Holm's step-down adjusted p-values, in the input's order: the i-th smallest p (from 1) is multiplied by
    m − i + 1, made non-decreasing along that order and capped at 1."""
    m = len(p_values)
    order = np.argsort(p_values, kind="stable")
    adjusted = np.empty(m)
    running = 0.0
    for rank, index in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p_values[index]))
        adjusted[index] = running
    return adjusted.tolist()


def mcnemar_p(a: np.ndarray, b: np.ndarray) -> float:
    """McNemar's exact two-sided p for one seed each: c (B right, A wrong) of the b + c discordant questions."""
    b_only = int(((b == 1) & (a == 0)).sum())
    a_only = int(((a == 1) & (b == 0)).sum())
    if a_only + b_only == 0:
        return 1.0
    return float(binomtest(b_only, a_only + b_only, 0.5).pvalue)


def seed_draws(rng: np.random.Generator, seeds: int, resamples: int) -> np.ndarray:
    """(resamples, seeds) indices: each replicate's seeds drawn with replacement."""
    return rng.integers(0, seeds, size=(resamples, seeds))


def replicate_diffs(a: np.ndarray, b: np.ndarray, draws_a: np.ndarray, draws_b: np.ndarray,
                    rng: np.random.Generator) -> np.ndarray:
    """B − A accuracy (0-1) of each replicate: the drawn seeds' mean per question, then the same drawn questions
    for both groups. Chunked over replicates so a large test set stays within CHUNK_ELEMENTS per group."""
    resamples, questions = len(draws_a), a.shape[1]
    chunk = max(1, CHUNK_ELEMENTS // (questions * max(a.shape[0], b.shape[0])))
    diffs = np.empty(resamples)
    for start in range(0, resamples, chunk):
        stop = min(start + chunk, resamples)
        per_question = b[draws_b[start:stop]].mean(axis=1) - a[draws_a[start:stop]].mean(axis=1)  # (chunk, q)
        picked = rng.integers(0, questions, size=(stop - start, questions))
        diffs[start:stop] = np.take_along_axis(per_question, picked, axis=1).mean(axis=1)
    return diffs


def seed_variance(a: np.ndarray) -> float:
    """Variance of a group's mean from its seeds: their accuracies' sample variance / n (0 with one seed).
    It holds the seed effect and each seed's answer noise, estimated without the questions' spread."""
    return float(a.mean(axis=1).var(ddof=1) / len(a)) if len(a) > 1 else 0.0


def residual_variance(a: np.ndarray) -> float:
    """The two-way (seed x question) table's residual mean square: the answer noise of one seed on one question
    beyond its seed's and its question's effects (0 with one seed: not estimable)."""
    seeds, questions = a.shape
    if seeds < 2 or questions < 2:
        return 0.0
    residual = a - a.mean(axis=1, keepdims=True) - a.mean(axis=0, keepdims=True) + a.mean()
    return float((residual ** 2).sum() / ((seeds - 1) * (questions - 1)))


def question_variance(a: np.ndarray, b: np.ndarray) -> float:
    """Variance of the difference from which questions were drawn: the spread of the per-question differences of
    the seed means over questions, minus the answer noise the seed variance already counts (not below 0)."""
    per_question = b.mean(axis=0) - a.mean(axis=0)
    noise = residual_variance(a) / len(a) + residual_variance(b) / len(b)
    return max(0.0, float(per_question.var(ddof=1)) - noise) / a.shape[1] if a.shape[1] > 1 else 0.0


@dataclass(frozen=True)
class Variance:
    """Moment estimate of Var(B − A) as its parts, each with its degrees of freedom (seeds − 1, questions − 1)."""
    parts: tuple  # ((variance, degrees of freedom), ...)

    @property
    def total(self) -> float:
        return sum(v for v, _ in self.parts)

    @property
    def dof(self) -> float:
        """Welch-Satterthwaite: few seeds make the estimate itself uncertain, and the reference a wide t."""
        spread = sum(v ** 2 / d for v, d in self.parts if v > 0 and d > 0)
        return self.total ** 2 / spread if spread > 0 else np.inf


def t_p(diff: float, variance: Variance) -> float:
    """Two-sided p of diff against t with the variance's degrees of freedom."""
    if variance.total <= 0:
        return 1.0 if diff == 0 else 0.0
    return float(2 * t_dist.sf(abs(diff) / np.sqrt(variance.total), variance.dof))


def scaled_deviations(replicates: np.ndarray, variance: Variance, level: float) -> np.ndarray:
    """The replicates' deviations from their mean, rescaled to the moment estimate of the variance and widened
    by t over normal at the interval's level (the uncertainty of a variance estimated from few seeds).

    A crossed bootstrap (seeds x questions) counts each seed's answer noise twice, once in the seeds' spread and
    once in the questions', and resampling n seeds shrinks their variance by (n - 1)/n: the two biases go opposite
    ways by amounts that depend on how noisy the seeds are. The distribution keeps its shape, not its spread."""
    deviations = replicates - replicates.mean()
    spread = deviations.var()
    if spread <= 0:
        return deviations
    quantile = 1 - (1 - level) / 2
    widening = t_dist.ppf(quantile, variance.dof) / norm.ppf(quantile) if np.isfinite(variance.dof) else 1.0
    return deviations * np.sqrt(variance.total / spread) * widening


def summarise(diff: float, deviations: np.ndarray, p: float, n_questions: int, seeds: tuple[int, int],
              level: float) -> Comparison:
    """The comparison in points; the interval is the estimate plus the deviations' percentiles."""
    tail = 100 * (1 - level) / 2
    low, high = 100 * (diff + np.percentile(deviations, [tail, 100 - tail]))
    return Comparison(diff=100 * diff, ci_low=float(low), ci_high=float(high), p=p, p_holm=p, significant=False,
                      n_questions=n_questions, seeds_a=seeds[0], seeds_b=seeds[1])


def check_pairs(subsets: dict) -> dict:
    """{subset: (A, B)} as arrays, the same questions in both and the same seed counts in every subset."""
    if not subsets:
        raise ValueError("no subsets to compare")
    checked = {}
    for name, (a, b) in subsets.items():
        a, b = as_outcomes(a, f"{name} A"), as_outcomes(b, f"{name} B")
        if a.shape[1] != b.shape[1]:
            raise ValueError(f"{name}: A has {a.shape[1]} questions, B {b.shape[1]}; a paired test needs the same questions")
        checked[name] = (a, b)
    seed_counts = {(a.shape[0], b.shape[0]) for a, b in checked.values()}
    if len(seed_counts) > 1:
        raise ValueError(f"every subset needs the same seeds per group, got {sorted(seed_counts)}")
    return checked


def seed_parts(seed_var: float, seeds: int, noise_var: float, noise_dof: float) -> tuple:
    """A group's seed variance split into the answer noise it holds (estimated from every seed x question cell:
    many degrees of freedom) and the seed effect proper (the rest, not below 0: few degrees of freedom, by
    Satterthwaite for a difference of mean squares). Two seeds whose outcomes differ by answer noise alone are
    then no longer as uncertain as one degree of freedom would make them."""
    if seeds < 2:
        return ()
    effect = max(0.0, seed_var - noise_var)
    spread = seed_var ** 2 / (seeds - 1) + (noise_var ** 2 / noise_dof if noise_dof > 0 else 0.0)
    return ((effect, effect ** 2 / spread if spread > 0 else np.inf), (noise_var, noise_dof))


def group_parts(a: np.ndarray) -> tuple:
    seeds, questions = a.shape
    return seed_parts(seed_variance(a), seeds, residual_variance(a) / (seeds * questions),
                      (seeds - 1) * (questions - 1))


def difference_variance(a: np.ndarray, b: np.ndarray) -> Variance:
    """Moment estimate of Var(B − A) for one subset: both groups' seeds, then the questions."""
    return Variance((*group_parts(a), *group_parts(b), (question_variance(a, b), a.shape[1] - 1)))


def macro_parts(groups: list[np.ndarray]) -> tuple:
    """group_parts of one group's macro average: each run's macro accuracy over its seeds (the subsets share the
    runs, so their seed effects add up), its answer noise the subsets' noise / subsets²."""
    seeds = len(groups[0])
    macro = np.mean([g.mean(axis=1) for g in groups], axis=0)[:, None]
    noise = sum(residual_variance(g) / (seeds * g.shape[1]) for g in groups) / len(groups) ** 2
    return seed_parts(seed_variance(macro), seeds, noise, sum((seeds - 1) * (g.shape[1] - 1) for g in groups))


def average_variance(subsets: dict) -> Variance:
    """Moment estimate of Var of the macro average's difference: both groups' seeds, then each subset's question
    part / subsets²."""
    pairs = list(subsets.values())
    questions = sum(question_variance(a, b) for a, b in pairs) / len(pairs) ** 2
    return Variance((*macro_parts([a for a, _ in pairs]), *macro_parts([b for _, b in pairs]),
                     (questions, sum(a.shape[1] - 1 for a, _ in pairs))))


def compare_groups(subsets: dict, resamples: int = RESAMPLES, seed: int = SEED, alpha: float = ALPHA,
                   level: float = LEVEL) -> dict[str, Comparison]:
    """{subset: Comparison, ..., "average": Comparison} for {subset: (A outcomes, B outcomes)}.

    Repeatable: the same inputs, resamples and seed give the same numbers."""
    subsets = check_pairs(subsets)
    first_a, first_b = next(iter(subsets.values()))
    seeds = (len(first_a), len(first_b))
    rng = np.random.default_rng(seed)
    draws_a, draws_b = seed_draws(rng, seeds[0], resamples), seed_draws(rng, seeds[1], resamples)
    results, all_replicates = {}, []
    for name, (a, b) in subsets.items():
        diff = b.mean() - a.mean()
        replicates = replicate_diffs(a, b, draws_a, draws_b, rng)
        all_replicates.append(replicates)
        variance = difference_variance(a, b)
        p = mcnemar_p(a[0], b[0]) if seeds == (1, 1) else t_p(diff, variance)
        results[name] = summarise(diff, scaled_deviations(replicates, variance, level), p, a.shape[1], seeds, level)
    for result, p_holm in zip(results.values(), holm([r.p for r in results.values()])):
        result.p_holm, result.significant = p_holm, p_holm <= alpha
    average_diff = float(np.mean([b.mean() - a.mean() for a, b in subsets.values()]))
    variance = average_variance(subsets)
    deviations = scaled_deviations(np.mean(all_replicates, axis=0), variance, level)
    average = summarise(average_diff, deviations, t_p(average_diff, variance),
                        sum(a.shape[1] for a, _ in subsets.values()), seeds, level)
    average.significant = average.p <= alpha
    results[AVERAGE] = average
    return results
