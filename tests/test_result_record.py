"""result.json, a run's result record (hira/evaluation/result.py), the tables built from it, the Pareto plots
(hira/paper/figures.py) and the forgetting measure (hira/evaluation/forgetting.py).

The record through train.py and eval.py is checked inside the tests that already run them (test_train_e2e.py,
test_eval_models.py) with check_record below; here the fast, hand-written cases."""

import json

from omegaconf import OmegaConf
from helpers import SUBSETS, TABLE1, ours, table_sections, write_run

from hira.evaluation.result import N_QUESTIONS, RESULT_FORMAT, thawed_settings
from hira.paper.figures import pareto_front, section_points
from hira.paper.runs import best_entry, read_scores, run_settings
from hira.paper.tables import make_tables
from hira.run_dir import RunDir

# --- the tables from records ------------------------------------------------------------------------------------

def write_record(folder, accuracy: float, trainable_percent: float, adapter_bytes: int) -> None:
    """A record for a hand-written run folder (write_run), with other numbers than its scores.json, so a table
    that shows them was read from the record."""
    run = RunDir(folder)
    cfg = OmegaConf.load(run.config)
    best = best_entry(read_scores(run, cfg), cfg)
    setting = {"mode": "generate", "num_beams": 4, "max_new_tokens": 8, "limit": None}
    subsets = {s: {"questions": 50, "correct": round(50 * accuracy), "accuracy": accuracy, "parse_failures": 0,
                   "predictions_file": f"predictions/generate_b4_t8/step_10/{s}.jsonl"} for s in SUBSETS}
    cost = dict.fromkeys(["trainable_params", "total_params", "adapter_file", "train_tokens", "tokens_per_s"])
    record = {"format": RESULT_FORMAT, "scoring": "generate_b4_t8", "config": OmegaConf.to_container(cfg),
              "scorings": {"generate_b4_t8": {"setting": setting, "checkpoint": "step_10", "subsets": subsets,
                                              "average": accuracy, "scoring_time_s": 1.0,
                                              "fingerprint": thawed_settings(run_settings(cfg, best))}},
              "cost": {**cost, "trainable_percent": trainable_percent, "adapter_bytes": adapter_bytes,
                       "peak_memory_gb": 2.0, "train_time_s": 50.0, "scoring_time_s": 1.0}}
    run.result.write_text(json.dumps(record))


def test_tables_read_the_records_and_name_the_folders_without_one(tmp_path):
    for seed in (1, 2):
        folder = write_run(tmp_path / f"lora_s{seed}", ["method=lora"], seed=seed, accuracy=0.5)
        write_record(folder, 0.75, 0.4, 2_500_000)
    old = write_run(tmp_path / "hira_s1", (), seed=1, accuracy=0.6)  # an older folder: no result.json
    report = make_tables(tmp_path)
    rows = {r["method"]: r for r in ours(table_sections(report.markdown, TABLE1)["tiny, task synthetic"])}
    cells = ("Avg.", "trainable %", "adapter size", "n")
    # the record's numbers, not scores.json's 50.00
    assert [rows["lora"][c] for c in cells] == ["75.00 ± 0.00", "0.4", "2.5 MB", "2"]  # no "± 0" for a fixed size
    assert [rows["hira"][c] for c in cells] == ["60.00", "—", "—", "1"]  # read as before; it has no adapter file
    assert report.without_record == [f"no result.json in 1 run folder(s), read from scores.json and metrics.jsonl: "
                                     f"{old}"]
    png, pdf = (tmp_path / f"pareto_table1_tiny_task_synthetic.{ext}" for ext in ("png", "pdf"))
    assert png in report.written and pdf in report.written
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and pdf.read_bytes()[:5] == b"%PDF-"
    assert json.loads((tmp_path / "lora_s1" / "result.json").read_text())["cost"]["adapter_bytes"] == 2_500_000


def test_a_record_from_before_the_questions_key_was_renamed_groups_with_a_new_one(tmp_path):
    # result.json of format 1 written before the rename keeps the questions per subset under "n q"
    for seed in (1, 2):
        write_record(write_run(tmp_path / f"lora_s{seed}", ["method=lora"], seed=seed), 0.5 + seed / 10, 0.4, 1000)
    old = tmp_path / "lora_s1" / "result.json"
    record = json.loads(old.read_text())
    fingerprint = record["scorings"]["generate_b4_t8"]["fingerprint"]
    fingerprint["n q"] = fingerprint.pop(N_QUESTIONS)
    old.write_text(json.dumps(record))
    rows = ours(table_sections(make_tables(tmp_path).markdown, TABLE1)["tiny, task synthetic"])
    assert [(r["method"], r["setting"], r["n"], r["Avg."]) for r in rows] == [("lora", "", "2", "65.00 ± 7.07")]


def test_one_point_per_group_with_the_seeds_spread(tmp_path):
    class FakeRun:
        def __init__(self, average, params, memory, seconds):
            self.scores, self.trainable_params = {"average": average}, params
            self.peak_memory_gb, self.train_time_s = memory, seconds

    groups = [("lora r32", [FakeRun(70.0, 100, 2.0, 10.0), FakeRun(74.0, 100, 3.0, 14.0)]),
              ("hira r32", [FakeRun(80.0, 100, 2.0, None)]),
              ("base", [FakeRun(30.0, None, None, None)])]  # no cost: no point
    panels = dict((axis[0], points) for axis, points in section_points(groups))
    assert panels["trainable_params"] == [("lora r32", (100, 72.0, 2 * 2 ** 0.5)), ("hira r32", (100, 80.0, 0.0))]
    assert panels["train_time_s"] == [("lora r32", (12.0, 72.0, 2 * 2 ** 0.5))]


def test_pareto_front_hand_made():
    points = [(1.0, 50.0), (2.0, 60.0), (2.0, 55.0), (3.0, 58.0), (4.0, 70.0), (0.5, 40.0), (4.0, 70.0)]
    # (2, 55) is beaten by (2, 60), (3, 58) by (2, 60); the two equal best points both stay
    assert pareto_front(points) == [5, 0, 1, 4, 6]
    assert pareto_front([]) == [] and pareto_front([(1.0, 1.0)]) == [0]
