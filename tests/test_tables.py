"""hira-make-tables on fixture run folders: runs average together only when their settings are equal, one run per
seed, folders that are not finished runs are listed, the paper is compared only in its own setting, and
tables.tex holds tables.md's rows.

The fixtures are the files train.py and eval.py write (config.yaml composed and resolved by Hydra from the real
configs, metrics.jsonl's end event, scores.json's best entry), written by hand with chosen scores.
"""

import re
import shutil
import statistics
import subprocess

import pytest
from helpers import FULL, HEADERS, SUBSETS, TABLE1, TABLE12, composed, ours, table_sections, write_run, write_scores
from omegaconf import OmegaConf

from hira.adapters import all_methods
from hira.commands.make_tables import main as make_tables_main
from hira.errors import UserError
from hira.evaluation.external import scoring_run_config
from hira.paper.tables import METHOD_ORDER, make_tables

PAPER_HIRA_R32 = [75.40, 89.70, 81.15, 82.90, 93.27, 88.32, 95.36, 87.70, 86.72]  # Table 1 order, then Avg.


def drop_setting(folder, section, key):
    """Remove a key from a run's config.yaml, as in a run made before the key existed."""
    cfg = OmegaConf.load(folder / "config.yaml")
    del cfg[section][key]
    (folder / "config.yaml").write_text(OmegaConf.to_yaml(cfg))


def section_note(markdown: str, title: str, heading: str) -> str:
    text = markdown.split(f"### {title}\n")[1].split(f"**{heading}**\n\n")[1]
    return text.split("\n")[0].strip("_") if text.startswith("_") else ""


def find(rows: list[dict], **labels) -> dict:
    found = [row for row in rows if all(row[k] == v for k, v in labels.items())]
    assert len(found) == 1, (labels, rows)
    return found[0]


def cells(value: float) -> dict:
    return {h: f"{value:.2f}" for h in [*HEADERS, "Avg."]}


# --- unlike runs, repeated seeds, half-made folders ----------------------------------------------------------

DEMO = ["train.max_steps=-1"]  # python train.py: the demo's full schedule
SMOKE = ["train.max_steps=2", "eval_limit=2"]


@pytest.fixture
def demo_folder(tmp_path):
    """The issue's trial: the demo at two seeds, a 2-step smoke run scored on 2 questions a subset (its seed run
    twice), a demo scored on 2 questions a subset, and folders that are not finished runs."""
    root = tmp_path / "outputs"
    write_run(root / "demo_s42", DEMO, seed=42, accuracy=0.665)
    write_run(root / "demo_s1", DEMO, seed=1, accuracy=0.705)
    write_run(root / "smoke_a", SMOKE, seed=42, accuracy=0.25, n=2, age_s=60)
    write_run(root / "smoke_b", SMOKE, seed=42, accuracy=0.5, n=2)   # the same command again, newer
    write_run(root / "smoke_s7", SMOKE, seed=7, accuracy=0.0, n=2)
    write_run(root / "limited", DEMO + ["eval_limit=2"], seed=42, accuracy=1.0, n=2)
    # half-made: an error after config.yaml was written (train.py logs it to train.log), no end event
    half = write_run(root / "half", (), seed=3, end=False, scored=False)
    (half / "train.log").write_text("[2026-12-06 02:00:00,000][hira.training.loop][INFO] - hira on tiny/synthetic\n"
                                    "[2026-12-06 02:00:01,000][root][ERROR] - error: task.cutoff_len=8 is too short\n")
    write_run(root / "killed", (), seed=4, end=False, scored=False)       # killed: no end event, no log
    write_run(root / "unscored", (), seed=5, scored=False)                # trained, its scoring never ran
    (root / "broken").mkdir()
    (root / "broken" / "config.yaml").write_text("model: [unclosed\n")
    return root


def test_unlike_runs_are_separate_labelled_rows_and_each_seed_counts_once(demo_folder):
    report = make_tables(demo_folder)
    sections = table_sections(report.markdown, TABLE1)
    assert list(sections) == ["tiny, task synthetic"]
    rows = sections["tiny, task synthetic"]
    ran = ours(rows)
    # three settings of HiRA r32: labelled by the two settings they differ in, never pooled
    assert [(r["method"], r["r"], r["setting"], r["n"]) for r in ran] == [
        ("hira", "r32", "max_steps -1, questions 2/subset", "1"),
        ("hira", "r32", "max_steps -1, questions 50/subset", "2"),
        ("hira", "r32", "max_steps 2, questions 2/subset", "2"),
    ]
    demo = find(rows, setting="max_steps -1, questions 50/subset")
    mean, std = statistics.mean([66.5, 70.5]), statistics.stdev([66.5, 70.5])  # 68.50 ± 2.83
    assert {h: demo[h] for h in [*HEADERS, "Avg."]} == {h: f"{mean:.2f} ± {std:.2f}" for h in [*HEADERS, "Avg."]}
    # the smoke group: seed 42 twice (the newer scored 50 %) and seed 7 (0 %): n = 2 distinct seeds, not 3
    smoke = find(rows, setting="max_steps 2, questions 2/subset")
    assert smoke["BoolQ"] == f"25.00 ± {statistics.stdev([50.0, 0.0]):.2f}"
    assert find(rows, setting="max_steps -1, questions 2/subset")["Avg."] == "100.00"
    # the paper: one reference row, no Δ anywhere (tiny model, synthetic questions)
    assert [r for r in rows if not r["n"]] == [{"method": "hira", "r": "r32", "setting": "paper (Llama-3-8B)",
                                                "n": "", **{h: f"{v:.2f}" for h, v in
                                                            zip([*HEADERS, "Avg."], PAPER_HIRA_R32)},
                                                "trainable %": "—", "adapter size": "—"}]  # no costs in the paper
    assert "Δ" not in report.tables.split(f"### {TABLE12}")[0].replace("ΔW", "")
    assert section_note(report.markdown, TABLE1, "tiny, task synthetic") == (
        "The paper's rows (Llama-3-8B) are a reference, not a comparison; not the paper's setting: "
        "model tiny; synthetic task synthetic.")
    # what was left out, one line each, at the end
    left = report.left_out
    assert left[0] == (f"repeated: seed 42 ran 2 times with the same settings (hira r32 on tiny, "
                       f"synthetic): used {demo_folder / 'smoke_b'} (newest), left out {demo_folder / 'smoke_a'}")
    assert left[1:] == [
        f"skipped {demo_folder / 'broken'}: unreadable config.yaml (while parsing a flow sequence)",
        f"skipped {demo_folder / 'half'}: error in train.log: error: task.cutoff_len=8 is too short",
        f"skipped {demo_folder / 'killed'}: no end event in metrics.jsonl (training did not finish)",
        f"skipped {demo_folder / 'unscored'}: no scores (no best entry in scores.json; python eval.py "
        f"run_dir={demo_folder / 'unscored'} scores it)",
    ]
    assert report.markdown.endswith("".join(f"- {line}\n" for line in left))


def test_the_command_ends_with_the_left_out_lines_and_strict_refuses(demo_folder, tmp_path, capsys):
    make_tables_main([str(demo_folder), "--out", str(tmp_path / "tables")])
    printed = capsys.readouterr().out.rstrip("\n").splitlines()
    assert printed[-5].startswith("repeated: seed 42") and printed[-4:][0].startswith("skipped ")
    assert printed[-7].startswith(f"wrote {tmp_path / 'tables' / 'tables.md'}, {tmp_path / 'tables' / 'tables.tex'}, "
                                  f"{tmp_path / 'tables' / 'pareto_table1_tiny_task_synthetic.png'}")
    assert printed[-6].startswith("no result.json in 6 run folder(s), read from scores.json and metrics.jsonl: ")
    with pytest.raises(SystemExit) as exit_info:
        make_tables_main([str(demo_folder), "--strict", "--out", str(tmp_path / "strict")])
    assert exit_info.value.code == 2 and not (tmp_path / "strict").exists()
    err = capsys.readouterr().err.strip()
    assert err == (f"error: --strict: 4 folder(s) under {demo_folder} hold a config.yaml but are not finished runs, "
                   f"e.g. {demo_folder / 'broken'}: unreadable config.yaml (while parsing a flow sequence)")
    for name in ("broken", "half", "killed", "unscored"):
        shutil.rmtree(demo_folder / name)
    make_tables_main([str(demo_folder), "--strict", "--out", str(tmp_path / "strict")])  # nothing skipped: fine
    assert (tmp_path / "strict" / "tables.md").is_file()


def test_an_error_before_a_finishing_resume_does_not_skip_the_run(tmp_path):
    run = write_run(tmp_path / "resumed", (), seed=1)
    (run / "train.log").write_text("[2000-01-01 00:00:00,000][root][ERROR] - error: killed by the scheduler\n")
    assert make_tables(tmp_path).left_out == []  # the error is older than the run's results
    (run / "train.log").write_text("[2999-01-01 00:00:00,000][root][ERROR] - error: scoring failed\n")
    with pytest.raises(UserError) as refused:  # the run is left out, and with it the only one
        make_tables(tmp_path)
    assert str(refused.value).endswith(f"1 folder(s) left out; e.g. {run}: error in train.log: error: scoring failed")


# --- the paper's setting ---------------------------------------------------------------------------------------

PAPER_RUN = ["model=llama3_8b", "task=commonsense"]  # the paper's model, data and schedule by default


def test_paper_is_compared_only_in_its_setting(tmp_path):
    write_run(tmp_path / "paper_s1", PAPER_RUN, seed=1, accuracy=0.70, n=FULL)
    write_run(tmp_path / "paper_s2", PAPER_RUN, seed=2, accuracy=0.80, n=FULL)
    write_run(tmp_path / "short", PAPER_RUN + ["train.max_steps=100"], seed=1, accuracy=0.30, n=FULL)
    write_run(tmp_path / "limited", PAPER_RUN, seed=1, accuracy=0.60, n=10)
    write_run(tmp_path / "synthetic", ["model=llama3_8b"], seed=1, accuracy=0.90)
    write_run(tmp_path / "tiny_real", ["task=commonsense"], seed=1, accuracy=0.40, n=FULL)
    markdown = make_tables(tmp_path).markdown
    sections = table_sections(markdown, TABLE1)
    assert list(sections) == ["llama3_8b, task commonsense", "llama3_8b, task synthetic", "tiny, task commonsense"]
    real = sections["llama3_8b, task commonsense"]
    assert [(r["setting"], r["n"]) for r in real] == [
        ("max_steps -1, questions 10/subset", "1"),
        ("max_steps -1, questions arc_c 1172 arc_e 2376 boolq 3270 hellaswag 10042 obqa 500 piqa 1838 siqa 1954 "
         "winogrande 1267", "2"),
        ("Δ vs paper", ""),
        ("max_steps 100, questions arc_c 1172 arc_e 2376 boolq 3270 hellaswag 10042 obqa 500 piqa 1838 siqa 1954 "
         "winogrande 1267", "1"),
        ("paper (Llama-3-8B)", ""),
    ]
    compared, delta = real[1], real[2]
    assert compared["BoolQ"] == f"75.00 ± {statistics.stdev([70.0, 80.0]):.2f}"
    assert {h: delta[h] for h in [*HEADERS, "Avg."]} == {h: f"{75.0 - p:+.2f}" for h, p in
                                                          zip([*HEADERS, "Avg."], PAPER_HIRA_R32)}
    note = section_note(markdown, TABLE1, "llama3_8b, task commonsense")
    assert note.startswith("Δ vs paper: mean − the paper's number, under each group in the paper's setting")
    assert "max_steps 100 (paper -1)" in note and "not the whole test sets (questions 10/subset)" in note
    # the paper's model on synthetic questions, the tiny model on the real ones: reference rows only, no Δ
    for heading, reason in (("llama3_8b, task synthetic", "synthetic task synthetic"),
                            ("tiny, task commonsense", "model tiny")):
        rows = sections[heading]
        assert [r["setting"] for r in rows] == ["", "paper (Llama-3-8B)"]
        assert section_note(markdown, TABLE1, heading).endswith(f"not the paper's setting: {reason}.")


def test_long_settings_are_tags_spelled_out_under_the_section(tmp_path):
    # a setting too long for a cell: every group of the section shows a tag, the legend under it spells it out
    write_run(tmp_path / "full", PAPER_RUN, seed=1, accuracy=0.70, n=FULL)
    write_run(tmp_path / "short", PAPER_RUN + ["train.max_steps=100"], seed=1, accuracy=0.30, n=FULL)
    write_run(tmp_path / "limited", PAPER_RUN, seed=1, accuracy=0.60, n=10)
    report = make_tables(tmp_path)
    block = report.markdown.split("**llama3_8b, task commonsense**")[1].split("\n**")[0]
    lines = [[c.strip() for c in line.split("|")] for line in block.splitlines() if line.startswith("| ")]
    cells = [line[lines[0].index("setting")] for line in lines[1:]]
    assert cells == ["S1", "S2", "Δ vs paper", "S3", "paper (Llama-3-8B)"]
    full = "questions " + " ".join(f"{s} {FULL[s]}" for s in sorted(FULL))
    assert re.findall(r"^- (S\d): (.*)$", block, re.M) == [
        ("S1", "max_steps -1, questions 10/subset"), ("S2", f"max_steps -1, {full}"), ("S3", f"max_steps 100, {full}")]
    assert f"max_steps 100, {full}".replace("_", r"\_") in (tmp_path / "tables.tex").read_text()
    # short settings stay in their cells
    short = tmp_path / "short_only"
    write_run(short / "a", ["train.max_steps=2"], seed=1)
    write_run(short / "b", ["train.max_steps=3"], seed=1)
    text = make_tables(short).markdown
    assert "| max_steps 2 |" in text and "| max_steps 3 |" in text and "- S1:" not in text


def test_methods_nobody_ran_are_listed_only_with_paper_grid(tmp_path):
    write_run(tmp_path / "a", (), seed=1)
    rows = table_sections(make_tables(tmp_path).markdown, TABLE1)["tiny, task synthetic"]
    assert [(r["method"], r["r"]) for r in rows] == [("hira", "r32"), ("hira", "r32")]
    grid = table_sections(make_tables(tmp_path, paper_grid=True).markdown, TABLE1)["tiny, task synthetic"]
    assert [(r["method"], r["r"], r["n"]) for r in grid] == [
        ("hira", "r32", "1"), ("prompt_tuning", "—", ""), ("p_tuning", "—", ""), ("lora", "r32", ""),
        ("dora", "r32", ""), ("mora", "r32", ""), ("hira", "r16", ""), ("hira", "r32", "")]
    prompt = find(grid, method="prompt_tuning")
    assert (prompt["BoolQ"], prompt["Avg."]) == ("—", "36.96")  # the paper lists its average only


def test_scoring_only_base_run_is_its_own_row(tmp_path):
    write_run(tmp_path / "hira_s1", (), seed=1, accuracy=0.6)
    base = tmp_path / "base_tiny_generate"
    base.mkdir()
    cfg = composed((), 1, base)
    run_cfg = scoring_run_config(OmegaConf.create(cfg["model"]), OmegaConf.create(cfg["task"]), {"name": "base"})
    (base / "config.yaml").write_text(OmegaConf.to_yaml(run_cfg))
    write_scores(base, 0.28, 50, SUBSETS)
    report = make_tables(tmp_path)
    rows = table_sections(report.markdown, TABLE1)["tiny, task synthetic"]
    assert [(r["method"], r["r"], r["setting"], r["n"], r["Avg."]) for r in rows] == [
        ("base", "—", "", "1", "28.00"), ("hira", "r32", "", "1", "60.00"),
        ("hira", "r32", "paper (Llama-3-8B)", "", "86.72")]
    assert report.left_out == []  # a scoring-only run needs no end event
    assert [r["method"] for r in table_sections(report.markdown, TABLE12)["tiny, task synthetic"] if r["n"]] == ["hira"]


def test_cells_hand_computed_placement_full_fine_tuning_and_cost(tmp_path):
    write_run(tmp_path / "a", PAPER_RUN, seed=1, accuracy=0.5, n=FULL, train_time_s=3600.0)
    write_run(tmp_path / "b", PAPER_RUN, seed=2, accuracy=0.7, n=FULL, train_time_s=7200.0)
    write_run(tmp_path / "c", PAPER_RUN + ["method.target_modules=[q_proj,v_proj]"], seed=1, accuracy=0.4, n=FULL)
    write_run(tmp_path / "d", PAPER_RUN + ["method=full"], seed=1, accuracy=0.8, n=FULL)
    markdown = make_tables(tmp_path).markdown
    rows = table_sections(markdown, TABLE1)["llama3_8b, task commonsense"]
    assert [(r["method"], r["modules"], r["setting"], r["n"]) for r in rows] == [
        ("full", "", "", "1"), ("hira", "FC+QKV", "", "2"), ("hira", "", "Δ vs paper", ""), ("hira", "QV", "", "1"),
        ("hira", "", "paper (Llama-3-8B)", "")]
    # mean 60, sample std of (50, 70) = 14.14; the paper's HiRA r32 BoolQ is 75.40
    assert (rows[1]["BoolQ"], rows[2]["BoolQ"]) == ("60.00 ± 14.14", "-15.40")
    assert rows[3]["BoolQ"] == "40.00" and rows[0]["r"] == "—"  # QV: not the paper's placement, no Δ
    placement = ours(table_sections(markdown, "Table 5: HiRA target-module placement")["llama3_8b, task commonsense"])
    assert [row["modules"] for row in placement] == ["FC+QKV", "QV"]
    cost = table_sections(markdown, TABLE12)["llama3_8b, task commonsense"]
    main = find(cost, method="hira", modules="FC+QKV", n="2")
    assert (main["Peak memory (GB)"], main["Train time"]) == ("1.50 ± 0.00", "1h30m00s ± 42m26s")
    assert find(cost, setting="paper (Llama-3-8B)", method="hira")["Train time"] == "14h09m32s"
    assert "Δ" not in markdown.split(f"### {TABLE12}")[1]  # cost is never compared: it depends on the machine
    assert "Table 6" not in markdown


def test_each_loss_on_is_its_own_row_and_older_runs_count_as_response(tmp_path):
    """table1_controlled's runs: a method's response-only and full-sequence rows side by side; a run made before
    task.loss_on (and task.format) existed counts as response (and commonsense)."""
    write_run(tmp_path / "lora_resp_1", PAPER_RUN + ["method=lora", "task.loss_on=response"], seed=1, accuracy=0.6,
              n=FULL)
    old = write_run(tmp_path / "lora_old_2", PAPER_RUN + ["method=lora"], seed=2, accuracy=0.7, n=FULL)
    drop_setting(old, "task", "loss_on")
    drop_setting(old, "task", "format")  # older still: every run was a commonsense run
    assert make_tables(tmp_path).tables.count("| lora | r32 |  | 2 |") == 1  # pooled, and no "loss on" column
    write_run(tmp_path / "lora_full_1", PAPER_RUN + ["method=lora", "task.loss_on=full"], seed=1, accuracy=0.5, n=FULL)
    write_run(tmp_path / "hira_full_1", PAPER_RUN + ["task.loss_on=full"], seed=1, accuracy=0.4, n=FULL)
    write_run(tmp_path / "hira_resp_1", PAPER_RUN, seed=1, accuracy=0.8, n=FULL)
    rows = table_sections(make_tables(tmp_path).markdown, TABLE1)["llama3_8b, task commonsense"]
    assert [(r["method"], r["loss on"], r["setting"], r["n"], r["BoolQ"]) for r in rows] == [
        ("lora", "response", "", "2", "65.00 ± 7.07"), ("lora", "", "Δ vs paper", "", "-5.80"),
        ("lora", "full", "", "1", "50.00"), ("lora", "", "Δ vs paper", "", "-20.80"),
        ("hira", "response", "", "1", "80.00"), ("hira", "", "Δ vs paper", "", "+4.60"),
        ("hira", "full", "", "1", "40.00"), ("hira", "", "Δ vs paper", "", "-35.40"),
        ("lora", "", "paper (Llama-3-8B)", "", "70.80"), ("hira", "", "paper (Llama-3-8B)", "", "75.40")]


def test_a_setting_an_older_run_lacks_is_named_unset(tmp_path):
    write_run(tmp_path / "new", (), seed=1)
    drop_setting(write_run(tmp_path / "old", (), seed=2), "train", "on_nonfinite")
    rows = ours(table_sections(make_tables(tmp_path).markdown, TABLE1)["tiny, task synthetic"])
    assert [(row["setting"], row["n"]) for row in rows] == [("on_nonfinite stop", "1"), ("on_nonfinite unset", "1")]


# --- the README's mini sweep -----------------------------------------------------------------------------------

def test_mini_sweep_renders_one_row_per_method_with_three_seeds(tmp_path):
    """Folders shaped like `python train.py -m +experiment=mini`'s runs: every method, seeds 1-3."""
    methods = all_methods()
    for i, (method, seed) in enumerate((m, s) for m in methods for s in (1, 2, 3)):
        write_run(tmp_path / f"{i}_{method}_tiny_s{seed}", ["+experiment=mini", f"method={method}"],
                  seed=seed, accuracy=0.30 + 0.01 * seed, n=10)
    markdown = make_tables(tmp_path).markdown
    rows = table_sections(markdown, TABLE1)["tiny, task synthetic"]
    ran = ours(rows)
    assert [r["method"] for r in ran] == sorted(methods, key=METHOD_ORDER.index)  # one row each, the paper's order
    assert {r["n"] for r in ran} == {"3"} and {r["setting"] for r in ran} == {""}
    assert {r["Avg."] for r in ran} == {f"32.00 ± {statistics.stdev([31.0, 32.0, 33.0]):.2f}"}
    assert [(r["method"], r["r"]) for r in rows if r["setting"] == "paper (Llama-3-8B)"] == [
        ("prompt_tuning", "—"), ("p_tuning", "—"), ("lora", "r32"), ("dora", "r32"), ("mora", "r32"),
        ("hira", "r32")]
    assert "Δ" not in markdown.replace("ΔW", "")
    assert [r["method"] for r in ours(table_sections(markdown, "Table 4: HiRA vs HiRA-rand (R ~ U[0,1] in place of W0)")
                                      ["tiny, task synthetic"])] == ["hira_rand", "hira"]


# --- tables.tex ------------------------------------------------------------------------------------------------

def tex_rows(tex: str) -> list[list[list[str]]]:
    """Per tabular, its body rows (header, section headings and rules excluded) split into cells."""
    tables = []
    for body in re.findall(r"\\toprule\n(.*?)\\bottomrule", tex, flags=re.S):
        lines = [line for line in body.splitlines()[1:] if line.endswith(r"\\") and "multicolumn" not in line]
        tables.append([[c.strip() for c in re.split(r"(?<!\\)&", line[:-2])] for line in lines])
    return tables


def md_rows(markdown: str) -> list[list[dict]]:
    titles = re.findall(r"^### (.*)$", markdown, flags=re.M)
    return [[row for rows in table_sections(markdown, title).values() for row in rows] for title in titles]


def test_latex_holds_the_markdown_rows_and_compiles(demo_folder, tmp_path):
    write_run(demo_folder / "paper_run", PAPER_RUN, seed=1, accuracy=0.7, n=FULL)
    report = make_tables(demo_folder, tmp_path)
    tex = (tmp_path / "tables.tex").read_text()
    assert tex.isascii()  # plain pdfLaTeX: ±, Δ, ⊙ and — are written as LaTeX
    markdown_tables, latex_tables = md_rows(report.markdown), tex_rows(tex)
    assert len(latex_tables) == len(markdown_tables) == tex.count(r"\begin{tabular}") == 2
    for md, latex in zip(markdown_tables, latex_tables):
        assert len(latex) == len(md)
        for md_row, tex_row in zip(md, latex):
            assert len(tex_row) == len(md_row)
            expected = [c.replace("±", r"$\pm$").replace("Δ", r"$\Delta$").replace("—", "---").replace("_", r"\_")
                        for c in md_row.values()]
            assert tex_row == expected
    for spec, header in re.findall(r"\\begin\{tabular\}\{([lc]+)\}\n\\toprule\n(.*)\n", tex):
        assert len(spec) == len(re.split(r"(?<!\\)&", header))
    assert tex.count("{") == tex.count("}") and tex.count(r"\toprule") == tex.count(r"\bottomrule") == 2
    if shutil.which("pdflatex"):  # where a LaTeX engine is installed, the real check: it compiles
        (tmp_path / "doc.tex").write_text("\\documentclass{article}\n\\usepackage{booktabs}\n\\begin{document}\n"
                                          "\\input{tables.tex}\n\\end{document}\n")
        proc = subprocess.run(["pdflatex", "-interaction=nonstopmode", "-halt-on-error", "doc.tex"], cwd=tmp_path,
                              capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, proc.stdout[-3000:]
        assert (tmp_path / "doc.pdf").stat().st_size > 1000
