"""The user-facing docs: the README's commands compose or answer --help, and the paper's numbers they print are the ones the
tables compare against (hira/paper/numbers.yaml)."""

import importlib
import re
import tomllib

import pytest
import yaml
from conftest import ROOT, compose_config
from omegaconf import OmegaConf

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


def readme_commands() -> list[list[str]]:
    """The README's command lines (code blocks, comment dropped) that run train.py, eval.py or a hira-* command."""
    commands, in_block = [], False
    for line in (ROOT / "README.md").read_text().splitlines():
        if line.startswith("```"):
            in_block = not in_block
            continue
        words = line.split("#")[0].split()
        runs_script = words[:1] in (["python"], ["deepspeed"]) and {"train.py", "eval.py"} & set(words)
        if in_block and words and (words[0].startswith("hira-") or runs_script):
            commands.append(words)
    return commands


def hydra_overrides(words: list[str]) -> tuple[str, list[str]]:
    """(train or eval, the overrides) of a `python train.py ...` or `deepspeed ... train.py ...` line: the launcher's
    flags, -m (a sweep composes each run from the same overrides) and --cfg job --resolve left out, a <placeholder>
    filled in."""
    script = next(w for w in words if w in ("train.py", "eval.py"))
    flags = {"-m", "--cfg", "job", "--resolve"}
    overrides = [w for w in words[words.index(script) + 1:] if w not in flags]
    return script.removesuffix(".py"), [re.sub(r"<\w+>", "PLACEHOLDER", w) for w in overrides]  # what the user fills in


def test_readme_train_and_eval_lines_compose():
    """Every train.py / eval.py line of the README composes with Hydra as written (in-process, nothing runs)."""
    lines = [words for words in readme_commands() if not words[0].startswith("hira-")]
    assert len(lines) >= 10
    for words in lines:
        config_name, overrides = hydra_overrides(words)
        cfg = compose_config(overrides, config_name)
        for override in overrides:
            key, _, value = override.lstrip("+").partition("=")
            if "." in key:  # a setting, not a group choice: it reached the config as written
                assert str(OmegaConf.select(cfg, key)) == value, " ".join(words)


def test_readme_console_commands_answer_help(capsys):
    """Every hira-* command the README shows is a console script of pyproject.toml whose --help works."""
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    names = sorted({words[0] for words in readme_commands() if words[0].startswith("hira-")})
    assert names and set(names) <= set(scripts)
    for name in names:
        module, _, function = scripts[name].partition(":")
        with pytest.raises(SystemExit) as exit_:
            getattr(importlib.import_module(module), function)(["--help"])
        assert exit_.value.code == 0 and "usage:" in capsys.readouterr().out, name


def test_readme_names_the_current_hub_cli_and_resolves_cfg_job():
    """huggingface_hub's CLI is `hf` now (`huggingface-cli download` is gone), and Hydra's `--cfg job` prints
    `${...}` unresolved unless `--resolve` is given."""
    readme = (ROOT / "README.md").read_text()
    assert "huggingface-cli" not in readme and "hf download meta-llama/Meta-Llama-3-8B" in readme.replace("\n", " ")
    cfg_job_lines = [line for line in readme.splitlines() if "--cfg job" in line]
    assert cfg_job_lines and all("--cfg job --resolve" in line for line in cfg_job_lines)


def test_readme_names_every_registered_method():
    from hira.adapters import all_methods

    intro = (ROOT / "README.md").read_text().split("ICLR 2025):")[1].split(".\n")[0]
    named = [name.strip() for name in re.split(r",| and ", intro.replace("\n", " ")) if name.strip()]
    assert len(named) == len(all_methods()), f"the README's first paragraph names {named}; registered: {all_methods()}"


@pytest.mark.parametrize("page", sorted(p.relative_to(ROOT).as_posix() for p in [ROOT / "README.md",
                                                                                  *(ROOT / "docs").glob("*.md")]))
def test_no_command_block_is_repeated_on_a_page(page):
    blocks = re.findall(r"```\w*\n(.*?)```", (ROOT / page).read_text(), re.S)
    assert len(blocks) == len(set(blocks)), f"{page} shows a code block twice"
