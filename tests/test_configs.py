"""The paper's settings as `--cfg job` shows them, and a clear failure when the 8B weights are missing."""


import pytest
from conftest import compose_config, run_script
from omegaconf import OmegaConf

PAPER = ["method=hira", "model=llama3_8b", "task=commonsense"]


def test_paper_settings():
    """What `python train.py method=hira model=llama3_8b task=commonsense --cfg job --resolve` prints, composed
    in-process."""
    cfg = OmegaConf.to_container(compose_config(PAPER), resolve=True)
    assert cfg["method"]["name"] == "hira" and cfg["method"]["params"] == {"r": 32}
    assert cfg["method"]["target_modules"] == ["q_proj", "k_proj", "v_proj", "up_proj", "down_proj"]
    train = cfg["train"]
    assert (train["lr"], train["weight_decay"], train["warmup_steps"]) == (1e-3, 0.0, 100)
    assert (train["global_batch_size"], train["epochs"], train["eval_steps"]) == (32, 3, 80)
    task = cfg["task"]
    assert (task["val_size"], task["split_seed"], task["num_beams"]) == (120, 58, 4)
    assert task["test_subsets"] == ["boolq", "piqa", "siqa", "hellaswag", "winogrande", "arc_e", "arc_c", "obqa"]
    assert cfg["run_dir"].startswith("outputs/commonsense/hira/llama3_8b/")


@pytest.mark.slow  # train.py in a subprocess
def test_missing_weights_fail_fast_with_one_line(tmp_path):
    proc = run_script("train.py", *PAPER, f"model.path={tmp_path}/nowhere", f"hydra.run.dir={tmp_path}/run")
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr
    assert f"{tmp_path}/nowhere" in lines[0] and "model.path=" in lines[0] and "meta-llama/Meta-Llama-3-8B" in lines[0]
