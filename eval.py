"""Score a training run's checkpoints, or a model no run made (base, peft adapter, merged), on the test sets.
Settings: configs/eval.yaml."""

import sys

import hydra
from omegaconf import OmegaConf

from hira.cli import check_eval_args, check_group_choices
from hira.errors import report_user_errors
from hira.evaluation.generation import check_engine_override


@hydra.main(config_path="configs", config_name="eval", version_base="1.3")
@report_user_errors
def main(cfg) -> None:
    settings = dict(batch_size=cfg.batch_size, num_beams=cfg.num_beams, max_new_tokens=cfg.max_new_tokens,
                    subsets=cfg.subsets, limit=cfg.limit, device=cfg.device, mode=cfg.eval.mode,
                    engine=cfg.eval.engine, bertscore=OmegaConf.to_container(cfg.eval.bertscore))
    if cfg.get("model") is not None:
        from hira.evaluation.external import evaluate_model

        evaluate_model(cfg.model, cfg.task, cfg.run_dir, adapter=cfg.adapter, **settings)
    else:
        from hira.evaluation.evaluator import evaluate_run

        evaluate_run(cfg.run_dir, cfg.checkpoints, watch=cfg.watch, poll_s=cfg.poll_s,
                     watch_timeout_s=cfg.watch_timeout_s, **settings)


if __name__ == "__main__":
    report_user_errors(check_group_choices)(sys.argv[1:])
    report_user_errors(check_eval_args)(sys.argv[1:])  # before Hydra creates <run_dir>/eval_logs
    report_user_errors(check_engine_override)(sys.argv[1:])
    main()
