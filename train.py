"""Fine-tune a base LM with a PEFT method, then beam-search the best checkpoint.  Settings: configs/train.yaml.

Under the deepspeed launcher every rank runs this file; the launcher's --local_rank flag is dropped (ranks
read LOCAL_RANK from the environment) and only rank 0 writes Hydra's logs and the run directory.
"""

import sys

import hydra

from hira.cli import check_group_choices, discard_unstarted_run_dir
from hira.distributed import strip_launcher_args
from hira.errors import report_user_errors


def check_arguments(args: list[str]) -> None:
    """Every value on the command line, checked with the config it composes before Hydra creates a folder (or
    writes into an existing run's: a resume under other settings is refused here, hira/config/check.py
    check_run_folder)."""
    from hira.config.command_line import check_command_line, check_launcher_config
    from hira.paper.sweep import check_launcher, check_sweep_cell

    check_group_choices(args)
    check_command_line("train", args, check_sweep_cell)
    check_launcher_config("train", args, check_launcher)


@hydra.main(config_path="configs", config_name="train", version_base="1.3")
@report_user_errors
@discard_unstarted_run_dir  # a run stopped by its up-front checks leaves no folder
def main(cfg):
    from hira.paper.sweep import run

    return run(cfg, train_and_score)  # under -m one cell of the sweep: skipped if finished, recorded if it fails


def train_and_score(cfg) -> None:
    from hira.training.loop import train

    run_dir = train(cfg)
    if cfg.evaluate_after_training:  # every rank scores a shard of the questions; rank 0 writes
        from hira.evaluation.evaluator import evaluate_run

        # this command's device: a resumed run's config.yaml keeps the placement it started with
        evaluate_run(run_dir, "best", limit=cfg.get("eval_limit"), device=cfg.hardware.device)


if __name__ == "__main__":
    sys.argv = strip_launcher_args(sys.argv)
    report_user_errors(check_arguments)(sys.argv[1:])
    main()
