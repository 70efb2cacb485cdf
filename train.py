"""Fine-tune a base LM with a PEFT method, then beam-search the best checkpoint.  Settings: configs/train.yaml."""

import hydra

from hira.errors import report_user_errors


@hydra.main(config_path="configs", config_name="train", version_base="1.3")
@report_user_errors
def main(cfg) -> None:
    from hira.training import distributed
    from hira.training.loop import train

    run_dir = train(cfg)
    if cfg.evaluate_after_training and distributed.is_main():
        from hira.evaluation.evaluator import evaluate_run

        evaluate_run(run_dir, "best")


if __name__ == "__main__":
    main()
