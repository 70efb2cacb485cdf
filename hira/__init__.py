"""HiRA reproduction pipeline."""

import os

# Before anything imports huggingface_hub (it reads this once): never reach for a hub at run time.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
