"""The user-facing docs: they cite only files in the repo, and the paper's numbers they print are the ones the
tables compare against (hira/paper/numbers.yaml)."""

import re

import yaml
from conftest import ROOT

DOC = ROOT / "docs" / "paper_settings.md"
TABLE1_COLUMNS = ["boolq", "piqa", "siqa", "arc_c", "arc_e", "obqa", "hellaswag", "winogrande", "average"]


def doc_table(title: str) -> dict[str, list[float]]:
    """{row label: numbers} of the markdown table following the bold `title` in paper_settings.md."""
    section = DOC.read_text().split(f"**{title}")[1].split("**")[1]
    rows = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("|") and re.fullmatch(r"[\d.]+", cells[-1]):
            rows[cells[0]] = [float(c) for c in cells[1:]]
    return rows


def paper_rows(table: str) -> dict[str, dict]:
    numbers = yaml.safe_load((ROOT / "hira" / "paper" / "numbers.yaml").read_text())
    return {f"{row['method']} {row['params']}": row["scores"] for row in numbers[table]["llama3_8b"]}


def test_paper_settings_table1_matches_numbers_yaml():
    rows = doc_table("Table 1")
    paper = paper_rows("table1")
    labels = {"LoRA r32": "lora r32", "DoRA r32": "dora r32", "MoRA r32": "mora r32", "HiRA r16": "hira r16",
              "HiRA r32": "hira r32"}
    assert set(rows) == set(labels)
    for label, key in labels.items():
        assert rows[label] == [paper[key][c] for c in TABLE1_COLUMNS], label


def test_paper_settings_table2_matches_numbers_yaml():
    rows = doc_table("Table 2")
    paper = paper_rows("table2")
    columns = ["bleu", "bert_f1", "bert_r", "bert_p", "meteor", "rouge_l", "average"]
    assert len(rows) == 3
    for label, values in rows.items():
        method, rank = label.split()
        assert values == [paper[f"{method.lower()} {rank}"][c] for c in columns], label


def test_no_file_cites_the_development_notes():
    """Users get the repo, not the development notes: README, docs, code and configs never cite DESIGN.md."""
    files = [ROOT / "README.md", *ROOT.glob("docs/**/*.md"), *ROOT.glob("hira/**/*.py"), *ROOT.glob("hira/**/*.yaml"),
             *ROOT.glob("configs/**/*.yaml"), *ROOT.glob("scripts/*.py"), *ROOT.glob("*.py")]
    citing = [str(f.relative_to(ROOT)) for f in files if "DESIGN.md" in f.read_text()]
    assert citing == []


def test_readme_commands_exist_in_the_installed_tools():
    """huggingface_hub's CLI is `hf` now (`huggingface-cli download` is gone), and Hydra's `--cfg job` prints
    `${...}` unresolved unless `--resolve` is given."""
    readme = (ROOT / "README.md").read_text()
    assert "huggingface-cli" not in readme and "hf download meta-llama/Meta-Llama-3-8B" in readme.replace("\n", " ")
    cfg_job_lines = [line for line in readme.splitlines() if "--cfg job" in line]
    assert cfg_job_lines and all("--cfg job --resolve" in line for line in cfg_job_lines)
