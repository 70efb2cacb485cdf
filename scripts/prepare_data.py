"""Convert downloaded task files into data/<task>/, the layout the task configs read, and print counts.

  python scripts/prepare_data.py commonsense --src LLM-Adapters/          # ft-training_set/ + dataset/
  python scripts/prepare_data.py commonsense --src commonsense_170k.json LLM-Adapters/dataset
  python scripts/prepare_data.py metamath --src MetaMathQA-395K.json
  python scripts/prepare_data.py gsm8k --src test.jsonl                     # or LLM-Adapters' gsm8k/test.json
  python scripts/prepare_data.py convai2 --src ParlAI/data/ConvAI2
"""

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hira.data.prepare import PREPARERS, prepare  # noqa: E402
from hira.errors import report_user_errors  # noqa: E402


@report_user_errors
def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("task", choices=list(PREPARERS))
    parser.add_argument("--src", nargs="+", required=True, help="downloaded file(s) or folder(s)")
    parser.add_argument("--out", default="data", help="data root; files go to <out>/<task folder>/ (default data/)")
    args = parser.parse_args(argv)
    dest, lines = prepare(args.task, args.src, Path(args.out))
    print(f"{args.task} -> {dest}/")
    for line in lines:
        print(f"  {line}")


if __name__ == "__main__":
    main()
