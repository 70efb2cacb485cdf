"""MetaMathQA (training) and GSM8K (test) -> LLM-Adapters records {"instruction", "input", "output", "answer"}.

MetaMathQA-395K.json is a JSON list of {"query", "response", "type", ...}; every response ends with
"The answer is: N". GSM8K's test set comes either as LLM-Adapters' dataset/gsm8k/test.json (already records)
or as openai's test.jsonl ({"question", "answer"} with the solution ending "#### N").
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from hira.data.records import DataError, check_keys, load_records, read_json_list

CALCULATOR = re.compile(r"<<[^>]*>>")  # GSM8K's calculator annotations, e.g. <<48/2=24>>
FINAL = re.compile(r"\n?####\s*(.+?)\s*$", re.S)


def final_answer(response: str) -> str:
    """What follows the last "The answer is" ("" if none): kept as the record's answer, for reference."""
    _, found, tail = response.rpartition("The answer is")
    return tail.lstrip(":").strip() if found else ""


def metamath_records(path: Path) -> list[dict]:
    """MetaMathQA items as Alpaca records: the query is the instruction, the full response the output."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"MetaMathQA file {path} not found; download MetaMathQA-395K.json (meta-math/MetaMathQA)")
    out = []
    for i, rec in enumerate(read_json_list(path)):
        check_keys(path, f"record {i}", rec, ("query", "response"))
        out.append({"instruction": rec["query"], "input": "", "output": rec["response"],
                    "answer": final_answer(rec["response"])})
    return out


def openai_gsm8k_record(path: Path, line_no: int, rec) -> dict:
    """{"question", "answer": "steps ... #### N"} -> a record whose output ends MetaMath-style "The answer is: N"."""
    check_keys(path, f"line {line_no}", rec, ("question", "answer"))
    match = FINAL.search(rec["answer"])
    if match is None:
        raise DataError(f"{path}: line {line_no} has no '#### <number>' at the end of its answer")
    number = match.group(1).replace(",", "")
    steps = CALCULATOR.sub("", rec["answer"][: match.start()]).strip()
    return {"instruction": rec["question"], "input": "", "output": f"{steps}\nThe answer is: {number}",
            "answer": number}


def gsm8k_records(path: Path) -> list[dict]:
    """GSM8K test examples from LLM-Adapters' test.json or openai's test.jsonl (told apart by content)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"GSM8K test file {path} not found; download LLM-Adapters' dataset/gsm8k/test.json "
                        f"or openai's grade_school_math/data/test.jsonl")
    text = path.read_text()
    if text.lstrip().startswith("["):
        return load_records(path, "gsm8k", "check the downloaded file")
    out = []
    for line_no, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as e:
            raise DataError(f"{path}: line {line_no} is not a JSON object: {e.msg}") from None
        out.append(openai_gsm8k_record(path, line_no, rec))
    if not out:
        raise DataError(f"{path}: no GSM8K records")
    return out
