"""Trainable parameters (and % of the model) of method=<m> on model=<m>, without weights: see hira/adapters/count.py.

    python scripts/count_params.py method=hira model=llama3_8b method.params.r=16
    python scripts/count_params.py --all model=smollm2_135m     # a table: every method at its defaults
    python scripts/count_params.py --all model=hf model.path=DIR   # any local model folder (its config.json)
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hira.adapters.count import main  # noqa: E402

if __name__ == "__main__":
    main()
