"""ConvAI2 in ParlAI's self_original text format -> (persona + history -> response) records: the reader of the convai2
format's downloads (hira/data/formats/convai2.py) and of its synthetic stand-in.

Each line is "<n> <text>"; n restarts at 1 with every dialogue. "your persona: ..." lines give the speaker's
persona; the other lines are "<partner utterance>\t<response>[\t<reward>\t<cand1|cand2|...>]". In the
self-persona setting only the speaker's persona is shown ("partner's persona:" lines, found in the "both"
files, are skipped). Every utterance line becomes one example whose history is the dialogue so far.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from hira.data.records import DataError

SPLITS = {"train": "train", "test": "valid"}  # ParlAI's valid split is the test set the papers report
SILENCE = "__SILENCE__"  # ParlAI's placeholder when the speaker opens the dialogue
INSTRUCTION = "Continue the conversation as the person with this persona.\n\nPersona:\n{persona}"


@dataclass
class Dialogue:
    persona: list = field(default_factory=list)
    turns: list = field(default_factory=list)  # (partner utterance, response)


def parse_line(path: Path, line_no: int, line: str) -> tuple[int, str]:
    number, _, text = line.partition(" ")
    if not number.isdigit():
        raise DataError(f"{path}: line {line_no} does not start with a turn number: {line[:60]!r}")
    return int(number), text


def parse_self_original(path: Path) -> list[Dialogue]:
    """The dialogues of one ParlAI ConvAI2 file."""
    path = Path(path)
    dialogues = []
    for line_no, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        number, text = parse_line(path, line_no, line)
        if number == 1 or not dialogues:
            dialogues.append(Dialogue())
        if text.startswith("your persona:"):
            dialogues[-1].persona.append(text.removeprefix("your persona:").strip())
        elif not text.startswith("partner's persona:"):
            fields = text.split("\t")
            if len(fields) < 2 or not fields[1].strip():
                raise DataError(f"{path}: line {line_no} is neither a persona line nor "
                                f"'utterance<TAB>response': {line[:60]!r}")
            dialogues[-1].turns.append((fields[0].strip(), fields[1].strip()))
    if not any(d.turns for d in dialogues):
        raise DataError(f"{path}: no dialogue turns found (expected ParlAI self_original lines)")
    return dialogues


def history_text(turns: list, partner: str) -> str:
    lines = [line for said, reply in turns for line in (f"Partner: {said}", f"You: {reply}")]
    lines.append(f"Partner: {partner}")
    return "\n".join(line for line in lines if not line.endswith(SILENCE))


def dialogue_records(dialogues: list[Dialogue]) -> list[dict]:
    """One record per utterance: persona in the instruction, the dialogue so far as input, the response as output."""
    records = []
    for d in dialogues:
        instruction = INSTRUCTION.format(persona="\n".join(d.persona))
        for k, (partner, response) in enumerate(d.turns):
            records.append({"instruction": instruction, "input": history_text(d.turns[:k], partner),
                            "output": response, "answer": response})
    return records


def split_file(src: Path, split: str) -> Path:
    """<src>/<split>_self_original.txt (or the _no_cands variant)."""
    for name in (f"{SPLITS[split]}_self_original.txt", f"{SPLITS[split]}_self_original_no_cands.txt"):
        if (Path(src) / name).is_file():
            return Path(src) / name
    raise DataError(f"convai2: {src} holds no {SPLITS[split]}_self_original.txt; point --src at ParlAI's "
                    f"data/ConvAI2 folder")
