"""Every registered method and task format has each piece docs/extending.md lists, so forgetting one fails here
(and not, silently, in a sweep that skips the method or a table without the format).

The registries: hira.adapters.all_methods() (hira/adapters/__init__.py imports each method's module) and
hira.data.formats.FORMATS. The other tests iterate them, so a new entry is tested as soon as it is registered;
the lists below are the pieces that cannot be derived and must be written by hand.
"""

import ast
import dataclasses
import json
import re

import pytest
import test_method_zoo
import test_methods_peft_oracle
import test_methods_train_e2e
import yaml
from conftest import ROOT
from omegaconf import OmegaConf

from hira.adapters import METHODS, all_methods
from hira.adapters.export import exportable_methods
from hira.data import formats
from hira.evaluation import answers, console, evaluator
from hira.scoring.scorers import Scorer

# method -> the test that checks it against an independent definition (peft, or its formula written out).
# prompt_tuning, p_tuning and full are peft's or torch's own code: training on the real model is their check.
ORACLES = {
    "lora": "test_methods_peft_oracle.py::test_outputs_and_gradients_match_peft",
    "dora": "test_methods_peft_oracle.py::test_outputs_and_gradients_match_peft",
    "vera": "test_methods_peft_oracle.py::test_outputs_and_gradients_match_peft",
    "hira": "test_hira_adapter.py::test_matches_peft_outputs_and_gradients",
    "hilora": "test_method_zoo.py::test_hilora_formula",
    "hira_rand": "test_method_zoo.py::test_hira_rand_formula_and_mask_regenerated_from_seed",
    "mora": "test_method_zoo.py::test_mora_matches_its_written_definition",
    "rasa": "test_method_zoo.py::test_rasa_pool_formula_and_parameter_count",
    "lora_dash": "test_method_zoo.py::test_lora_dash_switches_at_step_t_to_the_fastest_changing_directions",
    "lora_plus": "test_methods_peft_oracle.py::test_lora_plus_steps_match_peft_loraplus_optimizer",
    "prompt_tuning": "test_real_model_methods.py::test_trains_on_real_model_and_freezes_the_base",
    "p_tuning": "test_real_model_methods.py::test_trains_on_real_model_and_freezes_the_base",
    "full": "test_real_model_methods.py::test_trains_on_real_model_and_freezes_the_base",
}
METHOD_DOCS = [ROOT / "docs" / "methods.md"]  # the method table (what it is, defaults, oracle)


def function_names(path) -> set[str]:
    return {node.name for node in ast.walk(ast.parse(path.read_text())) if isinstance(node, ast.FunctionDef)}


def method_table_rows() -> str:
    return "\n".join(line for path in METHOD_DOCS for line in path.read_text().splitlines() if line.startswith("| `"))


@pytest.mark.parametrize("method", all_methods())
def test_method_has_its_config(method):
    path = ROOT / "configs" / "method" / f"{method}.yaml"
    assert path.is_file(), f"configs/method/{method}.yaml is missing"
    cfg = OmegaConf.load(path)
    assert cfg.name == method
    assert {"lr", "demo_lr"} <= set(cfg), f"{path.name} needs lr (real models) and demo_lr (the tiny base)"


def test_every_method_config_is_registered():
    assert sorted(p.stem for p in (ROOT / "configs" / "method").glob("*.yaml")) == all_methods()


@pytest.mark.parametrize("method", all_methods())
def test_method_is_documented(method):
    assert re.search(rf"^\| [^|]*`{method}`", method_table_rows(), re.M), \
        f"no row for `{method}` in the method table ({', '.join(p.name for p in METHOD_DOCS)})"
    # the parameter-count table of docs/methods.md (tests/test_param_count.py checks it against the command)
    assert re.search(rf"^\| {method} \|", (ROOT / "docs" / "methods.md").read_text(), re.M)


@pytest.mark.parametrize("method", all_methods())
def test_method_has_its_test_cases(method):
    assert method in test_methods_train_e2e.PARAMS, "tests/test_methods_train_e2e.py PARAMS: train + decode"
    if method in METHODS:  # a linear-layer method: merge / unmerge / reload / own parameters
        assert method in test_method_zoo.PARAMS and method in test_method_zoo.OWN_PARAMS, "tests/test_method_zoo.py"
    if method in exportable_methods():
        assert method in test_methods_peft_oracle.EXPORT_PARAMS, "tests/test_methods_peft_oracle.py EXPORT_PARAMS"
    assert method in ORACLES, f"name the test that checks {method} against an independent definition in ORACLES"
    path, _, test = ORACLES[method].partition("::")
    assert test in function_names(ROOT / "tests" / path), ORACLES[method]


def test_every_oracle_names_a_registered_method():
    assert set(ORACLES) <= set(all_methods())


# --- task formats ------------------------------------------------------------------------------------------

def task_configs() -> list[dict]:
    """Each configs/task/*.yaml's task section (the synthetic stand-ins are @package _global_)."""
    loaded = [yaml.safe_load(p.read_text()) for p in sorted((ROOT / "configs" / "task").glob("*.yaml"))]
    return [cfg.get("task", cfg) for cfg in loaded]


@pytest.mark.parametrize("name", list(formats.FORMATS))
def test_format_has_a_real_and_a_synthetic_task_config(name):
    mine = [task for task in task_configs() if task["format"] == name]
    assert any(not task.get("synthetic") for task in mine), f"no configs/task/*.yaml for the real {name} data"
    assert any(task.get("synthetic") for task in mine), f"no configs/task/*.yaml for {name}'s synthetic stand-in"


@pytest.mark.parametrize("name", list(formats.FORMATS))
def test_format_is_documented_and_tabled(name):
    from hira.paper import tables

    fmt = formats.FORMATS[name]
    assert f"data/{fmt.folder}/" in (ROOT / "docs" / "data.md").read_text(), "docs/data.md: its files and command"
    assert fmt.table in tables.TASK_TABLES and tables.TITLES[fmt.table] == fmt.title
    assert fmt.table in yaml.safe_load((ROOT / "hira" / "paper" / "numbers.yaml").read_text()), \
        "hira/paper/numbers.yaml: the paper's numbers of its table"


def written_texts(folder) -> list[str]:
    """The prompt and answer texts of the prepared JSON files under folder (not metadata such as MetaMath's type)."""
    texts = []
    for path in sorted(folder.rglob("*.json")):
        for record in json.loads(path.read_text()):
            texts += [record[key] for key in ("instruction", "input", "output", "answer") if record.get(key)]
    return texts


@pytest.mark.parametrize("name", list(formats.FORMATS))
def test_the_tiny_tokenizer_knows_every_word_of_the_synthetic_stand_in(name, tiny_tokenizer, tmp_path):
    """A stand-in whose words the tiny base never saw would train on <unk>: its words go into
    hira/models/tiny.py's tokenizer_texts (and WORLD_VERSION moves, so cached tiny models are rebuilt)."""
    task = next(task for task in task_configs()
                if task["format"] == name and task.get("synthetic"))
    small = {key: min(value, 20) if "size" in key or "per_subset" in key else value
             for key, value in task["synthetic"].items()}
    formats.FORMATS[name].write_synthetic(tmp_path, OmegaConf.create(small))
    texts = written_texts(tmp_path)
    assert texts
    unknown = [text for text in texts if tiny_tokenizer.unk_token_id in tiny_tokenizer(text)["input_ids"]]
    assert not unknown, f"{name}'s stand-in writes words the tiny tokenizer lacks, e.g. in {unknown[0]!r}"


class LastWordScorer(Scorer):
    """A kind of scoring no registered format has: the response's last word, judged case-insensitively."""

    name = "last_word"

    def extract(self, subset, text):
        words = text.split()
        return words[-1].strip(".").lower() if words else None

    def is_correct(self, prediction, gold):
        return prediction is not None and prediction == gold.lower()


def test_a_format_with_its_own_scorer_is_scored_by_its_module_and_registry_entry_alone(monkeypatch, tmp_path):
    """What a new format's module defines (its TaskFormat with a new scorer) plus its registry entry is all the
    evaluator, the answer extraction and the console table need: nothing else is edited, only the model's
    generation is faked."""
    toy = dataclasses.replace(formats.FORMATS["gsm8k"], name="toy", subsets=("toy_words",),
                              aliases={"ToyWords": "toy_words"}, scorer=LastWordScorer(), table="table99",
                              title="Table 99: toy words", columns=(("toy_words", "Toy"),))
    monkeypatch.setitem(formats.FORMATS, "toy", toy)
    assert answers.extract_answer("ToyWords", "it is a Cat.") == "cat"
    assert answers.is_correct("toy_words", "cat", "CAT")

    def fake_generate(model, tokenizer, prompts, *args, on_batch=None, **kwargs):
        outputs = ["it is a Cat.", "a dog", ""][: len(prompts)]
        on_batch(list(range(len(prompts))), outputs)
        return outputs

    monkeypatch.setattr(evaluator, "generate", fake_generate)
    records = [{"instruction": f"q{i}", "input": "", "output": "", "answer": gold}
               for i, gold in enumerate(["cat", "cow", "x"])]
    eval_cfg = evaluator.eval_settings(OmegaConf.create({"num_beams": 1, "max_new_tokens": 8}), {})
    scores = evaluator.score_model(None, None, {"toy_words": records}, eval_cfg, tmp_path)
    summary = scores["toy_words"]
    assert summary["accuracy"] == pytest.approx(1 / 3) and summary["parse_failures"] == 1 and summary["n"] == 3
    rows = [json.loads(line) for line in (tmp_path / "toy_words.jsonl").read_text().splitlines()]
    assert [(r["prediction"], r["correct"]) for r in rows] == [("cat", True), ("dog", False), (None, False)]
    table = console.format_table(scores)
    assert table.splitlines()[1].startswith("toy_words") and "33.33%" in table and "Table 1 row" not in table
