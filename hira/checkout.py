"""The checkout the pipeline runs from, and its configs/ folder (the one home of that path).

train.py, eval.py, configs/ and ds_configs/ are files of the git checkout, not of the package: the supported
install is `pip install -e .`, which leaves hira/ inside the checkout. A plain `pip install .` copies hira/ alone
into site-packages; there the commands that compose configs stop with require_checkout()'s one line.

Standard library only: benchmarks/gpu_check.py imports it before the project's requirements are installed.
"""

from __future__ import annotations

from pathlib import Path

from hira.errors import UserError

CHECKOUT = Path(__file__).resolve().parents[1]
CONFIG_DIR = CHECKOUT / "configs"


def require_checkout() -> Path:
    """CONFIG_DIR, or a UserError when the package was installed without its checkout."""
    if not (CONFIG_DIR / "train.yaml").is_file():
        raise UserError(f"no configs/ beside the hira package ({CHECKOUT}): the pipeline runs from a git checkout; "
                        "install it there with `pip install -e .`")
    return CONFIG_DIR
