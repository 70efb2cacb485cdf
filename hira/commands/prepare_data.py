"""Convert downloaded task files into data/<task>/, the layout the task configs read, and print counts.

  hira-prepare-data commonsense --src LLM-Adapters/          # ft-training_set/ + dataset/
  hira-prepare-data commonsense --src commonsense_170k.json LLM-Adapters/dataset
  hira-prepare-data metamath --src MetaMathQA-395K.json
  hira-prepare-data gsm8k --src test.jsonl                     # or LLM-Adapters' gsm8k/test.json
  hira-prepare-data convai2 --src ParlAI/data/ConvAI2

(or python scripts/prepare_data.py, same arguments)
"""

import argparse
from pathlib import Path

from hira.data.prepare import PREPARERS, prepare
from hira.errors import report_user_errors


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
