"""Every hardware option names a DeepSpeed config that exists, and "auto" values are filled from the Hydra config."""

import json
import re

import pytest
import yaml
from conftest import ROOT

from hira.errors import UserError
from hira.training.engine_config import accumulation_steps, deepspeed_config

HARDWARE = sorted((ROOT / "configs" / "hardware").glob("*.yaml"))


@pytest.mark.parametrize("path", HARDWARE, ids=lambda p: p.stem)
def test_hardware_names_an_existing_ds_config(path):
    hw = yaml.safe_load(path.read_text())
    assert (ROOT / hw["ds_config"]).is_file() and hw["micro_batch_size"] > 0


@pytest.mark.parametrize("path", sorted((ROOT / "ds_configs").glob("*.json")), ids=lambda p: p.stem)
def test_auto_values_are_filled(path):
    config = deepspeed_config(str(path), micro_batch=4, accumulation=8, grad_clip=1.0)
    assert (config["train_micro_batch_size_per_gpu"], config["gradient_accumulation_steps"]) == (4, 8)
    assert config["gradient_clipping"] == 1.0
    assert "auto" not in json.dumps(config)


@pytest.mark.parametrize("path", sorted((ROOT / "ds_configs").glob("*.json")), ids=lambda p: p.stem)
def test_a_ds_config_is_what_its_name_says(path):
    """zero<stage>[_offload][_bf16|_fp16]: a hardware option picks a config by name, so the name must not lie."""
    name = re.fullmatch(r"zero(?P<stage>[0-3])(?P<offload>_offload)?(?:_(?P<dtype>bf16|fp16))?", path.stem)
    assert name, f"{path.name}: not zero<stage>[_offload][_bf16|_fp16].json"
    config = json.loads(path.read_text())
    zero = config["zero_optimization"]
    assert zero["stage"] == int(name["stage"])
    assert ("offload_optimizer" in zero and "offload_param" in zero) == bool(name["offload"])
    for dtype in ("bf16", "fp16"):
        assert config.get(dtype, {}).get("enabled", False) == (name["dtype"] == dtype), dtype


def test_global_batch_split_across_ranks():
    assert accumulation_steps(32, 4, 8) == 1 and accumulation_steps(32, 4, 2) == 4
    with pytest.raises(UserError, match="global_batch_size=32 is not divisible"):
        accumulation_steps(32, 6, 2)
