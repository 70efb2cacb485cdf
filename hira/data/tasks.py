"""Task data as the training loop and the evaluator see it: training/validation records and test sets.

Every task is read from the same prepared layout (hira/data/layout.py: LLM-Adapters records in task.data_dir,
the training file plus <subset>/test.json); task.format names a registered format (hira/data/formats), which
decides which test subsets are valid, which prepare command a missing file points to, and which synthetic
stand-in `task.synthetic` generates.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from omegaconf import OmegaConf

from hira.data.formats import FORMATS, TaskFormat, get_format
from hira.data.layout import split_train_val
from hira.data.records import load_records
from hira.data.synthetic_world import WORLD_VERSION
from hira.files import read_json, write_json_atomic

SYNTHETIC_STAMP = "synthetic.json"  # which world version and task.synthetic settings wrote a stand-in folder


@dataclass
class TaskData:
    train: list
    val: list
    tests: dict = field(default_factory=dict)  # subset -> records
    train_file: Path | None = None  # the file train/val came from (keys the tokenization cache)


def format_name(task_cfg) -> str:
    """task.format, checked against the registry (the error names the valid ones)."""
    name = task_cfg.format
    get_format(name)
    return name


def format_of(task_cfg) -> TaskFormat:
    """The registered TaskFormat task.format names."""
    return FORMATS[format_name(task_cfg)]


def ensure_synthetic_files(task_cfg) -> None:
    """Write the synthetic stand-in of the task's format into task.data_dir, once per world version and
    task.synthetic settings: files an older world wrote would ask about facts the tiny base no longer knows."""
    data_dir = Path(task_cfg.data_dir)
    stamp = synthetic_stamp(task_cfg)
    if (data_dir / task_cfg.train_file).is_file() and read_json(data_dir / SYNTHETIC_STAMP) == stamp:
        return
    format_of(task_cfg).write_synthetic(data_dir, task_cfg.synthetic)
    write_json_atomic(data_dir / SYNTHETIC_STAMP, stamp)


def synthetic_stamp(task_cfg) -> dict:
    return {"world_version": WORLD_VERSION, "format": format_name(task_cfg),
            "synthetic": OmegaConf.to_container(task_cfg.synthetic)}


def prepare_hint(task_cfg, kind: str = "train") -> str:
    if task_cfg.get("synthetic"):
        return "it is generated on first use; delete the folder to regenerate it"
    return (f"{format_of(task_cfg).prepare_hint(kind)} (writes data/), "
            f"or set task.data_dir= to the folder that holds it")


def load_task(task_cfg, with_tests: bool = True) -> TaskData:
    format_name(task_cfg)  # an unknown format is refused before any file is read
    if task_cfg.get("synthetic"):
        ensure_synthetic_files(task_cfg)
    train_file = training_file(task_cfg)
    records = load_records(train_file, task_cfg.name, prepare_hint(task_cfg))
    train, val = split_train_val(records, task_cfg.val_size, task_cfg.split_seed)
    if task_cfg.get("train_limit"):  # a random subset (the split shuffled): short runs on the real files
        train = train[: task_cfg.train_limit]
    tests = load_tests(task_cfg) if with_tests else {}
    return TaskData(train, val, tests, train_file)


def training_file(task_cfg) -> Path:
    """The file of the training records, and of the validation split cut from them."""
    return Path(task_cfg.data_dir) / task_cfg.train_file


def subset_files(task_cfg) -> dict[str, Path]:
    """Each test subset's file, under the subset's canonical name."""
    fmt = format_of(task_cfg)
    return {fmt.canonical_subset(s): fmt.test_file(Path(task_cfg.data_dir), fmt.canonical_subset(s))
            for s in task_cfg.test_subsets}


def load_tests(task_cfg) -> dict:
    return {subset: cached_records(path, task_cfg.name, prepare_hint(task_cfg, "test"))
            for subset, path in subset_files(task_cfg).items()}


def data_files(task_cfg, with_tests: bool = True) -> dict[str, Path]:
    """The files load_task reads, by role: "train", "validation" (the same file: the split is cut from it) and
    "test/<subset>" for each test subset (with_tests)."""
    files = {"train": training_file(task_cfg), "validation": training_file(task_cfg)}
    if with_tests:
        files |= {f"test/{subset}": path for subset, path in subset_files(task_cfg).items()}
    return files


def run_data_files(cfg) -> dict[str, Path]:
    """data_files of what load_run_inputs reads for a training run (the tests only with evaluate_after_training)."""
    return data_files(cfg.task, with_tests=run_reads_tests(cfg))


_TEST_CACHE: dict = {}  # path -> ((mtime_ns, size), records): train.py checks the tests up front, then scores them


def cached_records(path: Path, task: str, hint: str) -> list[dict]:
    """load_records, parsed once per unchanged file in this process (a rewritten file is read again)."""
    path = Path(path)
    if not path.is_file():
        return load_records(path, task, hint)  # names the missing file
    stat, key = path.stat(), str(path.resolve())
    version = (stat.st_mtime_ns, stat.st_size)
    if _TEST_CACHE.get(key, (None,))[0] != version:
        _TEST_CACHE[key] = (version, load_records(path, task, hint))
    return list(_TEST_CACHE[key][1])


def load_run_inputs(cfg) -> TaskData:
    """Every data file a training run will read, checked before the model loads: the training file, the
    validation split (task.val_size against the file) and, with evaluate_after_training, every test subset,
    so a broken test file fails in seconds instead of after training. Errors name the file (and JSON line)."""
    return load_task(cfg.task, with_tests=run_reads_tests(cfg))


def run_reads_tests(cfg) -> bool:
    return bool(cfg.get("evaluate_after_training", False))
