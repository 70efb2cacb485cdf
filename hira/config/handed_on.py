"""A config checked once: the check phase hands the config it passed on to the job that runs it.

train.py and eval.py compose the command line's config and check it before Hydra runs (hira/config/command_line.py);
Hydra then composes the same config for the job. The check phase records each config it passed by a digest of its
content; train() and the evaluator skip their own check for a config recorded here, and check in full any other: one
that differs in a value, or that never went through the check phase (a test or a callback calling train(cfg)). A
record serves one job: it is used up.
"""

from __future__ import annotations

import hashlib
import json

from omegaconf import OmegaConf

PASSED: set[tuple[str, str]] = set()  # (which check, digest of the config it passed)


def digest(cfg) -> str:
    """The config's content as composed: every value, and each interpolation as written (what they resolve to is
    in the content itself, or the clock: ${now:} names a run folder a second later in the job)."""
    content = OmegaConf.to_container(cfg, resolve=False) if OmegaConf.is_config(cfg) else cfg
    return hashlib.sha256(json.dumps(content, sort_keys=True, default=repr).encode()).hexdigest()


def hand_on(cfg, check: str) -> None:
    """Record that cfg passed `check` (called right after it did, in the check phase)."""
    PASSED.add((check, digest(cfg)))


def check_unless_handed_on(cfg, check: str, run_check) -> None:
    """run_check(cfg), unless the check phase passed this very config for `check`."""
    record = (check, digest(cfg))
    if record in PASSED:
        PASSED.discard(record)
        return
    run_check(cfg)
