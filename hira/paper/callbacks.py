"""Hydra callbacks of the paper experiments: score the untuned base model when a sweep starts (the tables'
"base" row), and write and print the sweep's tables (make_tables.py) when it ends."""

from __future__ import annotations

import logging
from pathlib import Path

from hydra.experimental.callback import Callback

log = logging.getLogger(__name__)


class ScoreBaseModel(Callback):
    """Score the sweep's model untuned on the sweep's task, once per scoring mode, into <sweep dir>/base_<model>_<mode>.

    modes: generate (beam search + answer extraction, as every trained row) and/or loglik (the most likely
    answer option: a base model that answers in free text fails extraction but can still know the answer).
    """

    def __init__(self, modes=("generate",), limit: int | None = None):
        self.modes, self.limit = list(modes), limit

    def on_multirun_start(self, config, **kwargs) -> None:
        from hira.evaluation.external import evaluate_model

        for mode in self.modes:
            out = Path(config.hydra.sweep.dir) / f"base_{config.model.name}_{mode}"
            evaluate_model(config.model, config.task, out, experiment=config.get("experiment"), mode=mode,
                           limit=self.limit, device=config.hardware.device)


class PrintTables(Callback):
    def on_multirun_end(self, config, **kwargs) -> None:
        from hira.paper.tables import make_tables

        try:
            report = make_tables(Path(config.hydra.sweep.dir))
        except Exception as e:  # a table problem must not hide the finished runs
            log.warning("could not build the tables (run hira-make-tables by hand): %s", e)
            return
        print(report.console(), flush=True)
