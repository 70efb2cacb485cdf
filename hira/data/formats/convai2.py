"""ConvAI2, self-persona (the paper's Table 2): persona + dialogue history -> the next response, scored by the
dialogue metrics. hira/data/parlai_reader.py parses ParlAI's self_original files."""

from __future__ import annotations

from pathlib import Path

from hira.data import layout, parlai_reader, synthetic_math_dialogue
from hira.data.formats.base import Preparer, SyntheticSizes, TaskFormat
from hira.files import write_json_atomic
from hira.scoring.scorers import DialogueScorer

NAME = "convai2"
SUBSETS = ("convai2",)
TRAIN_FILE = "train.json"
# The paper's Table 2 columns, in its order.
COLUMNS = (("bleu", "BLEU"), ("bert_f1", "BERT F1"), ("bert_r", "BERT-R"), ("bert_p", "BERT-P"),
           ("meteor", "METEOR"), ("rouge_l", "R-L"), ("average", "Avg."))


def test_path(out_dir: Path) -> Path:
    return layout.test_file(out_dir, "convai2")


def prepare_convai2(srcs: list, dest: Path) -> list[str]:
    src, lines = layout.single(srcs, "convai2"), []
    for split, out in (("train", Path(dest) / TRAIN_FILE), ("test", test_path(dest))):
        path = parlai_reader.split_file(src, split)
        dialogues = parlai_reader.parse_self_original(path)
        records = parlai_reader.dialogue_records(dialogues)
        write_json_atomic(out, records)
        lines.append(f"{split} ({path.name}): {layout.count(len(dialogues), 'dialogues')}, "
                     f"{layout.count(len(records), 'utterances')}")
    return lines


def write_synthetic(data_dir: Path, syn) -> None:
    raw = synthetic_math_dialogue.write_dialogue_sources(Path(data_dir) / "raw", syn.train_size, syn.test_size,
                                                         syn.seed)
    prepare_convai2([raw], data_dir)


FORMAT = TaskFormat(
    name=NAME, subsets=SUBSETS, train_file=TRAIN_FILE, folder=NAME,
    preparers=(Preparer(NAME, prepare_convai2, "<ParlAI ConvAI2 folder with *_self_original.txt>"),),
    write_synthetic=write_synthetic, synthetic_settings=SyntheticSizes, scorer=DialogueScorer(), table="table2",
    title="Table 2: ConvAI2 dialogue generation", columns=COLUMNS,
)
