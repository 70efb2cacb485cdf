"""hydra/launcher=submitit_local_pool: submitit's local executor running at most `array_parallelism` cells at a
time (the plugin's own submitit_local starts every cell of the sweep at once). Needs the `cluster` extra.
Hydra instantiates launchers from the hydra_plugins namespace only, hence this package beside hira/."""

from __future__ import annotations

from hydra_plugins.hydra_submitit_launcher.submitit_launcher import LocalLauncher


class PooledLocalLauncher(LocalLauncher):
    def __init__(self, array_parallelism: int = 1, **params):
        super().__init__(**params)
        self.array_parallelism = int(array_parallelism)

    def launch(self, job_overrides, initial_job_idx):
        """The cells in batches of array_parallelism, each batch one submitit array that runs in parallel."""
        returns, n = [], self.array_parallelism
        for start in range(0, len(job_overrides), n):
            returns += super().launch(job_overrides[start:start + n], initial_job_idx + start)
        return returns
