"""Answer extraction from generated text, following the paper and LLM-Adapters: the first keyword match wins."""

from __future__ import annotations

import re

from hira.data.commonsense import ALIASES

PATTERNS = {
    "boolq": re.compile(r"true|false"),
    "piqa": re.compile(r"solution1|solution2"),
    "siqa": re.compile(r"answer1|answer2|answer3|answer4|answer5"),
    "arc_e": re.compile(r"answer1|answer2|answer3|answer4|answer5"),
    "arc_c": re.compile(r"answer1|answer2|answer3|answer4|answer5"),
    "obqa": re.compile(r"answer1|answer2|answer3|answer4|answer5"),
    "hellaswag": re.compile(r"ending1|ending2|ending3|ending4"),
    "winogrande": re.compile(r"option1|option2"),
}


def extract_answer(task: str, text: str) -> str | None:
    """The answer label in `text` for subset `task` (LLM-Adapters names accepted), or None if none is found."""
    task = ALIASES.get(task, task)
    if task not in PATTERNS:
        raise ValueError(f"no answer extraction for task {task!r}; valid: {', '.join(PATTERNS)}")
    match = PATTERNS[task].search(text.strip())
    return match.group(0) if match else None
