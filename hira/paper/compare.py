"""Two groups of finished runs compared question by question (hira-compare; hira-make-tables --compare).

A group is every run under the folder whose settings (hira/paper/runs.py's fingerprint) hold all of its KEY=VALUE
pairs; its runs must share their settings (they differ in their seed only; the newest run of a seed is used), and
the two groups' settings may differ only in the keys named. Each run's per-question outcomes are the `correct`
field of its best checkpoint's prediction rows (question_outcomes); both groups must have answered the same
questions, checked by a hash of the rows' prompts and gold answers. The statistics: hira/paper/paired.py.
Nothing here writes into a run folder.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml

from hira.config.settings import frozen
from hira.errors import UserError
from hira.paper import paired
from hira.paper.runs import Run, find_runs, seeds_oldest_first
from hira.run_dir import PREDICTIONS_DIR, RunDir

# --- selecting the groups ----------------------------------------------------------------------------------


def parse_value(text: str):
    """A VALUE as the config holds it: YAML, with numbers YAML 1.1 reads as text (1e-9) read as numbers."""
    value = yaml.safe_load(text) if text.strip() else ""
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return value
    return frozen(value)


def parse_pairs(items: list[str], flag: str) -> dict:
    """["train.lr=1e-9", ...] -> {"train.lr": 1e-09, ...}; a malformed pair is a UserError naming it."""
    pairs = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise UserError(f"{flag} {item!r}: expected KEY=VALUE, e.g. method.name=hira or train.lr=1e-4")
        pairs[key.strip()] = parse_value(value)
    if not pairs:
        raise UserError(f"{flag} needs at least one KEY=VALUE, e.g. {flag} method.name=hira")
    return pairs


def same_value(have, want) -> bool:
    """Config values equal, numbers compared as numbers (1e-09 == 1e-9, 2 == 2.0; True is not 1)."""
    numbers = (int, float)
    if isinstance(have, numbers) and isinstance(want, numbers) and not isinstance(have, bool) \
            and not isinstance(want, bool):
        return math.isclose(have, want, rel_tol=1e-12, abs_tol=0.0)
    return have == want


def matches(run: Run, pairs: dict) -> bool:
    return all(key in run.settings and same_value(run.settings[key], value) for key, value in pairs.items())


def differing_keys(first: dict, second: dict) -> list[str]:
    """Settings keys whose values differ (or that one of the two lacks)."""
    return sorted(k for k in set(first) | set(second)
                  if k not in first or k not in second or not same_value(first[k], second[k]))


def selection_text(pairs: dict) -> str:
    """{key: value} of --a/--b as the command line gave them: "method.name=hira train.lr=0.0002"."""
    return " ".join(f"{k}={v}" for k, v in pairs.items())


def select_group(runs: list[Run], pairs: dict, name: str) -> list[Run]:
    """The runs of one settings group holding every pair; one line naming what is wrong otherwise."""
    chosen = [run for run in runs if matches(run, pairs)]
    if not chosen:
        unknown = [k for k in pairs if not any(k in run.settings for run in runs)]
        hint = f"; no run has the setting {', '.join(unknown)}" if unknown else ""
        raise UserError(f"group {name} ({selection_text(pairs)}): no finished run matches among {len(runs)}{hint}")
    spread = sorted({key for run in chosen for key in differing_keys(chosen[0].settings, run.settings)})
    if spread:
        raise UserError(f"group {name} ({selection_text(pairs)}) holds runs of different settings, differing in "
                        f"{', '.join(spread)}; add those keys to --{name.lower()}")
    return [same[-1] for same in seeds_oldest_first(chosen).values()]  # each seed's newest, as the tables


def covered(key: str, named: set) -> bool:
    """A key named, or one of the config group a named `<group>.name` chose (method.name=lora brings LoRA's own
    method.params.*: choosing the method chooses them)."""
    return key in named or any(n.endswith(".name") and key.startswith(n[: -len("name")]) for n in named)


def check_only_named(group_a: list[Run], group_b: list[Run], named: set) -> list[str]:
    """The keys the groups differ in (all covered by the named ones); one line naming the others otherwise."""
    differing = differing_keys(group_a[0].settings, group_b[0].settings)
    unnamed = [k for k in differing if not covered(k, named)]
    if unnamed:
        raise UserError(f"the groups differ in settings not named in --a/--b: {', '.join(unnamed)}; name them, or "
                        f"select groups that differ only in {', '.join(sorted(named))}")
    return differing


# --- per-question outcomes ---------------------------------------------------------------------------------


def predictions_file(run: Run, subset: str) -> Path:
    """The prediction rows of the run's best checkpoint on one subset, under the scoring setting the run was read
    with: the path its result.json records; in a folder without one, predictions/<setting>/<checkpoint>/
    <subset>.jsonl, or predictions/<checkpoint>/<subset>.jsonl when scored before settings were kept."""
    if subset in run.predictions_files:  # the run's result record says where they are
        return Path(run.path) / run.predictions_files[subset]
    folder = RunDir(run.path)
    current = folder.predictions(str(run.scoring_id), str(run.best_checkpoint)) / f"{subset}.jsonl"
    legacy = folder.path / PREDICTIONS_DIR / str(run.best_checkpoint) / f"{subset}.jsonl"
    return legacy if not current.is_file() and legacy.is_file() else current


def question_outcomes(run: Run, subset: str) -> tuple[np.ndarray, str]:
    """(0/1 per question in file order, a hash of the questions: their prompts and gold answers)."""
    path = predictions_file(run, subset)
    if not path.is_file():
        raise UserError(f"{run.path} has no predictions for {subset} ({path} is missing); score it with "
                        f"python eval.py run_dir={run.path}")
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    if any("correct" not in row for row in rows):
        raise UserError(f"{path}: rows without a `correct` field ({subset} is not scored by accuracy); "
                        f"hira-compare compares accuracy subsets only")
    questions = hashlib.sha256(json.dumps([[r.get("prompt"), r.get("gold")] for r in rows]).encode()).hexdigest()
    return np.array([bool(r["correct"]) for r in rows], dtype=int), questions


def accuracy_subsets(runs: list[Run]) -> list[str]:
    """The subsets every run scored by accuracy (dialogue subsets have no per-question outcome)."""
    first = runs[0]
    return [s for s in first.subsets if s in first.scores and all(s in r.subsets for r in runs)]


def group_outcomes(group_a: list[Run], group_b: list[Run]) -> dict:
    """{subset: (A (seeds, questions), B (seeds, questions))}; refuses groups scored on different questions."""
    subsets_a, subsets_b = accuracy_subsets(group_a), accuracy_subsets(group_b)
    if set(subsets_a) != set(subsets_b) or not subsets_a:
        raise UserError(f"the groups were scored on different subsets: A {', '.join(subsets_a) or 'none'}, "
                        f"B {', '.join(subsets_b) or 'none'}")
    outcomes = {}
    for subset in subsets_a:
        read = {run.path: question_outcomes(run, subset) for run in group_a + group_b}
        hashes = {questions for _, questions in read.values()}
        if len(hashes) > 1:
            counts = sorted({len(o) for o, _ in read.values()})
            raise UserError(f"the groups were scored on different questions in {subset} (prompts or gold answers "
                            f"differ; question counts {counts}); compare runs scored on the same test questions")
        outcomes[subset] = (np.stack([read[r.path][0] for r in group_a]), np.stack([read[r.path][0] for r in group_b]))
    return outcomes


# --- the comparison ----------------------------------------------------------------------------------------


@dataclass
class Report:
    a: dict
    b: dict
    group_a: list
    group_b: list
    differing: list    # the settings keys the groups differ in
    results: dict      # {subset: paired.Comparison, ..., "average": ...}

    def as_json(self) -> dict:
        return {name: result.as_dict() for name, result in self.results.items()}

    def table(self) -> str:
        lines = [f"A: {selection_text(self.a)} ({len(self.group_a)} seeds: {seeds(self.group_a)})",
                 f"B: {selection_text(self.b)} ({len(self.group_b)} seeds: {seeds(self.group_b)})",
                 f"settings that differ: {', '.join(self.differing)}",
                 "B − A in accuracy points; 95 % interval from the paired hierarchical bootstrap; "
                 "p_holm: Holm across the subsets (the average is not in the family)", ""]
        return "\n".join(lines + comparison_lines(self.results))


def seeds(runs: list[Run]) -> str:
    return ", ".join(str(r.seed) for r in runs)


HEADER = ("subset", "diff", "95 % CI", "p", "p_holm", "significant", "n_questions", "seeds A/B")


def comparison_lines(results: dict) -> list[str]:
    """A Markdown table: one row per subset, then the average."""
    rows = [HEADER, tuple("---" for _ in HEADER)]
    for name, r in results.items():
        rows.append((name, f"{r.diff:+.2f}", f"[{r.ci_low:+.2f}, {r.ci_high:+.2f}]", fmt_p(r.p), fmt_p(r.p_holm),
                     "yes" if r.significant else "no", str(r.n_questions), f"{r.seeds_a}/{r.seeds_b}"))
    return ["| " + " | ".join(row) + " |" for row in rows]


def fmt_p(p: float) -> str:
    return f"{p:.2g}" if p < 0.001 else f"{p:.3f}"


def finished_runs(root: Path, scoring: str | None) -> list[Run]:
    """The finished runs under root, each read under its own scoring setting or `scoring` (a mode or a setting
    id, as hira-make-tables --scoring)."""
    runs, _ = find_runs(root, scoring)
    if scoring is not None and not runs:
        raise UserError(f"--scoring {scoring}: no finished run under {root} was scored that way")
    return runs


def compare(root: Path, a: dict, b: dict, scoring: str | None = None, seed: int = paired.SEED,
            resamples: int = paired.RESAMPLES) -> Report:
    """Group A against group B under root: hira-compare's work, nothing written."""
    if a.keys() == b.keys() and not differing_keys(a, b):
        raise UserError(f"--a and --b select the same runs ({selection_text(a)}); give B a different value")
    if resamples < 100:
        raise UserError(f"--resamples {resamples}: use at least 100 (default {paired.RESAMPLES})")
    runs = finished_runs(Path(root), scoring)
    group_a, group_b = select_group(runs, a, "A"), select_group(runs, b, "B")
    differing = check_only_named(group_a, group_b, set(a) | set(b))
    results = paired.compare_groups(group_outcomes(group_a, group_b), resamples=resamples, seed=seed)
    return Report(a, b, group_a, group_b, differing, results)


# --- hira-make-tables --compare ------------------------------------------------------------------------------


def block_against_reference(groups: list[tuple[str, list[Run]]], reference: dict) -> list[str]:
    """Markdown lines comparing every group of a table section with the section's reference group (the one
    whose settings hold `reference`), on the macro average: [] when the section has no single reference."""
    chosen = [(label, runs) for label, runs in groups if matches(runs[0], reference)]
    if not groups or not accuracy_subsets(groups[0][1]):
        return []
    if len(chosen) != 1:
        return [f"_Paired comparison: {len(chosen)} groups in this section hold {selection_text(reference)}; "
                f"it needs exactly one reference group._", ""]
    ref_label, ref_runs = chosen[0]
    lines = [f"Paired comparison with the reference {ref_label} ({selection_text(reference)}): group − reference on the "
             f"average, points, 95 % paired hierarchical bootstrap interval; subsets: those significant after Holm.",
             "", "| group | diff | 95 % CI | p | subsets significant | seeds ref/group |", "|---|---|---|---|---|---|"]
    for label, runs in groups:
        if runs is ref_runs:
            continue
        try:
            results = paired.compare_groups(group_outcomes(ref_runs, runs))
        except UserError as e:
            lines.append(f"| {label} | — | — | — | not comparable: {e} | {len(ref_runs)}/{len(runs)} |")
            continue
        avg = results.pop(paired.AVERAGE)
        won = [name for name, r in results.items() if r.significant]
        lines.append(f"| {label} | {avg.diff:+.2f} | [{avg.ci_low:+.2f}, {avg.ci_high:+.2f}] | {fmt_p(avg.p)} | "
                     f"{', '.join(won) or 'none'} ({len(won)}/{len(results)}) | {avg.seeds_a}/{avg.seeds_b} |")
    return lines + [""]
