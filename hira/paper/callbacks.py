"""Hydra callback of the paper experiments: when a sweep ends, write and print its tables (make_tables.py)."""

from __future__ import annotations

import logging
from pathlib import Path

from hydra.experimental.callback import Callback

log = logging.getLogger(__name__)


class PrintTables(Callback):
    def on_multirun_end(self, config, **kwargs) -> None:
        from hira.paper.tables import make_tables

        try:
            markdown, written = make_tables(Path(config.hydra.sweep.dir))
        except Exception as e:  # a table problem must not hide the finished runs
            log.warning("could not build the tables (run scripts/make_tables.py by hand): %s", e)
            return
        print(markdown + "\nwrote " + ", ".join(str(p) for p in written), flush=True)
