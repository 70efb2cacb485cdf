"""Task data as the training loop and the evaluator see it: training/validation records and test sets.

Every task is read from the same prepared layout (LLM-Adapters records in task.data_dir: the training file
plus <subset>/test.json); task.format (commonsense | gsm8k | convai2) decides which test subsets are valid,
which prepare command a missing file points to, and which synthetic stand-in `task.synthetic` generates.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from hira.data import commonsense, convai2, metamath, prepare, synthetic, synthetic_tasks
from hira.data.records import DataError, load_records
from hira.files import write_json_atomic

FORMATS = {"commonsense": commonsense, "gsm8k": metamath, "convai2": convai2}


@dataclass
class TaskData:
    train: list
    val: list
    tests: dict = field(default_factory=dict)  # subset -> records
    train_file: Path | None = None  # the file train/val came from (keys the tokenization cache)


def task_format(task_cfg) -> str:
    fmt = task_cfg.get("format", "commonsense")  # run configs written before task.format existed
    if fmt not in FORMATS:
        raise DataError(f"task.format={fmt!r}; valid: {', '.join(FORMATS)}")
    return fmt


def canonical_subset(fmt: str, subset: str) -> str:
    if fmt == "commonsense":
        return commonsense.canonical_subset(subset)
    if subset not in FORMATS[fmt].TEST_SUBSETS:
        raise DataError(f"task.test_subsets: {subset!r} is not a {fmt} test set; valid: "
                        f"{', '.join(FORMATS[fmt].TEST_SUBSETS)}")
    return subset


def write_synthetic_commonsense(data_dir: Path, syn) -> None:
    train, tests = synthetic.make_splits(syn.train_per_subset, syn.test_per_subset, seed=syn.seed)
    for subset, records in tests.items():
        write_json_atomic(commonsense.test_file(data_dir, subset), records)
    write_json_atomic(data_dir / commonsense.TRAIN_FILE, train)


def write_synthetic_gsm8k(data_dir: Path, syn) -> None:
    train, test = synthetic_tasks.write_math_sources(data_dir / "raw", syn.train_size, syn.test_size, syn.seed)
    prepare.prepare_gsm8k([test], data_dir)
    prepare.prepare_metamath([train], data_dir)  # the training file last: its presence marks a finished write


def write_synthetic_convai2(data_dir: Path, syn) -> None:
    raw = synthetic_tasks.write_dialogue_sources(data_dir / "raw", syn.train_size, syn.test_size, syn.seed)
    prepare.prepare_convai2([raw], data_dir)


SYNTHETIC_WRITERS = {"commonsense": write_synthetic_commonsense, "gsm8k": write_synthetic_gsm8k,
                     "convai2": write_synthetic_convai2}


def ensure_synthetic_files(task_cfg) -> None:
    """Write the synthetic stand-in of the task's format into task.data_dir, once."""
    data_dir = Path(task_cfg.data_dir)
    if not (data_dir / task_cfg.train_file).is_file():
        SYNTHETIC_WRITERS[task_format(task_cfg)](data_dir, task_cfg.synthetic)


def prepare_hint(task_cfg, kind: str = "train") -> str:
    if task_cfg.get("synthetic"):
        return "it is generated on first use; delete the folder to regenerate it"
    return (f"{FORMATS[task_format(task_cfg)].prepare_hint(kind)} (writes data/), "
            f"or set task.data_dir= to the folder that holds it")


def load_task(task_cfg, with_tests: bool = True) -> TaskData:
    fmt = task_format(task_cfg)
    if task_cfg.get("synthetic"):
        ensure_synthetic_files(task_cfg)
    data_dir = Path(task_cfg.data_dir)
    train_file = data_dir / task_cfg.train_file
    records = load_records(train_file, task_cfg.name, prepare_hint(task_cfg))
    train, val = commonsense.split_train_val(records, task_cfg.val_size, task_cfg.split_seed)
    if task_cfg.get("train_limit"):  # a random subset (the split shuffled): short runs on the real files
        train = train[: task_cfg.train_limit]
    tests = load_tests(task_cfg, fmt, data_dir) if with_tests else {}
    return TaskData(train, val, tests, train_file)


def load_tests(task_cfg, fmt: str, data_dir: Path) -> dict:
    tests = {}
    for subset in task_cfg.test_subsets:
        subset = canonical_subset(fmt, subset)
        tests[subset] = cached_records(commonsense.test_file(data_dir, subset), task_cfg.name,
                                       prepare_hint(task_cfg, "test"))
    return tests


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
    return load_task(cfg.task, with_tests=bool(cfg.get("evaluate_after_training", False)))
