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
    from hira.config.check import check_eval_config
    from hira.config.command_line import check_command_line

    check_group_choices(args)
    check_eval_args(args)
    check_command_line("eval", args, check_eval_config)


@hydra.main(config_path="configs", config_name="eval", version_base="1.3")
@report_user_errors
def main(cfg) -> None:
    settings = dict(batch_size=cfg.batch_size, num_beams=cfg.num_beams, max_new_tokens=cfg.max_new_tokens,
                    subsets=cfg.subsets, limit=cfg.limit, device=cfg.device, mode=cfg.eval.mode,
                    engine=cfg.eval.engine, bertscore=OmegaConf.to_container(cfg.eval.bertscore),
                    forgetting_text=cfg.eval.forgetting_text)
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
