"""Score a training run's checkpoints, or a model no run made (base, peft adapter, merged), on the test sets.
Settings: configs/eval.yaml."""

import sys

import hydra
from omegaconf import OmegaConf

from hira.cli import check_eval_args, check_group_choices
from hira.distributed import strip_launcher_args
from hira.errors import report_user_errors


def check_arguments(args: list[str]) -> None:
    """Every value on the command line, checked with the config it composes before Hydra creates a folder."""
    from hira.config.command_line import check_command_line

    check_group_choices(args)
    check_eval_args(args)
    check_command_line("eval", args, check_eval_job)


def check_eval_job(cfg) -> None:
    """The check phase: the config, then the scoring settings the job scores with, which the evaluator then takes
    as checked (hira/config/handed_on.py); before training wrote a watched run's config its task is not known yet."""
    from hira.config.check import check_eval_config, run_task
    from hira.config.handed_on import hand_on
    from hira.evaluation.evaluator import eval_settings

    check_eval_config(cfg)
    task = cfg.task if cfg.get("model") is not None else run_task(cfg.run_dir)
    if task is not None:
        hand_on(eval_settings(task, scoring_settings(cfg)), "scoring")


def scoring_settings(cfg) -> dict:
    """The settings eval.yaml gives the evaluator (evaluate_run and evaluate_model take them as arguments)."""
    return dict(batch_size=cfg.batch_size, num_beams=cfg.num_beams, max_new_tokens=cfg.max_new_tokens,
                subsets=cfg.subsets, limit=cfg.limit, device=cfg.device, mode=cfg.eval.mode,
                engine=cfg.eval.engine, bertscore=OmegaConf.to_container(cfg.eval.bertscore),
                forgetting_text=cfg.eval.forgetting_text)


@hydra.main(config_path="configs", config_name="eval", version_base="1.3")
@report_user_errors
def main(cfg) -> None:
    settings = scoring_settings(cfg)
    if cfg.get("model") is not None:
        from hira.evaluation.external import evaluate_model

        evaluate_model(cfg.model, cfg.task, cfg.run_dir, adapter=cfg.adapter, **settings)
    else:
        from hira.evaluation.evaluator import evaluate_run

        evaluate_run(cfg.run_dir, cfg.checkpoints, watch=cfg.watch, poll_s=cfg.poll_s,
                     watch_timeout_s=cfg.watch_timeout_s, **settings)


if __name__ == "__main__":
    sys.argv = strip_launcher_args(sys.argv)  # `deepspeed --num_gpus N eval.py ...`: every rank scores a shard
    report_user_errors(check_arguments)(sys.argv[1:])  # before Hydra creates <run_dir>/eval_logs
    main()
