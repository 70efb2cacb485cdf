"""Every key of train.py's and eval.py's configurations: its type, its valid values, its range.

One dataclass per config section; a field is a key. The annotation is the type (Optional: null is valid, and
the key may be absent), a Literal lists the choices, and `key(...)` adds a range or a check of the value itself
(hira/config/values.py). The rules that span keys (a batch split, a method's parameters, a task's subsets)
are in hira/config/check.py. The dataclasses are never instantiated: check.py walks a composed config against
them, so Hydra's config stays plain yaml and every key keeps its comment in configs/.

Which keys can change a result is said here too, once: `key(neutral=...)` and `key(repeat=...)`, each with its
reason. The tables' fingerprint and resume's check of a run's settings both derive from it (hira/config/settings.py).

Adding a key: add it to its yaml (with a comment) and a field here; tests/test_configs.py checks that every
config composes and passes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, Optional

from hira.adapters import all_methods
from hira.config import values
from hira.data.formats import FORMATS
from hira.models.loading import DTYPES


def key(*, ge=None, gt=None, le=None, lt=None, check=None, neutral=None, repeat=None):
    """A field's range (ge: >=, gt: >, le: <=, lt: <) and a check of its value (fn(value) -> problem or None).

    Whether the key can change a run's result (hira/config/settings.py reads it): by default it can. neutral=
    "why" marks a key that cannot (it and every key under it); repeat="why" one that tells repeats of one setting
    apart (the seeds: the tables average over them, a resume must keep them)."""
    bounds = {name: bound for name, bound in (("ge", ge), ("gt", gt), ("le", le), ("lt", lt)) if bound is not None}
    return field(metadata={"bounds": bounds, "check": check, "neutral": neutral, "repeat": repeat})


# The choices that code elsewhere acts on: each is named once, here.
LOSS_ON = ("response", "full")             # which tokens the loss covers (hira/data/tokenize.py)
ON_NONFINITE = ("stop", "skip")            # a NaN/inf step (hira/training/guard.py)
RESUME = ("auto", "strict", False)         # resume=auto | strict | false (hira/training/checkpoint.py)
LOGGERS = ("none", "wandb")                # where metrics go besides metrics.jsonl (hira/training/runlog.py)
WANDB_MODES = ("offline", "online", "disabled")
EVAL_MODES = ("generate", "loglik")        # hira/evaluation/evaluator.py
EVAL_ENGINES = ("prefill", "hf")           # each prompt encoded once | transformers' generate (hira/evaluation/generation.py)


# --- the groups (configs/<group>/*.yaml) -----------------------------------------------------------------------------

@dataclass
class TinyPretrain:
    steps: int = key(ge=0)
    batch_size: int = key(ge=1)
    seq_len: int = key(ge=2)
    lr: float = key(gt=0)
    fact_docs: int = key(ge=0)
    quiz_docs: int = key(ge=0)


@dataclass
class Tiny:
    """The in-project base (hira/models/tiny.py) built into model.cache_path on first use."""
    seed: int = key(ge=0)
    hidden_size: int = key(ge=1)
    intermediate_size: int = key(ge=1)
    num_layers: int = key(ge=1)
    num_heads: int = key(ge=1)
    max_positions: int = key(ge=2)
    pretrain: TinyPretrain = key()


@dataclass
class GgufWheel:
    """A registry wheel holding a GGUF file, converted once into model.cache_path (hira/models/gguf_wheel.py)."""
    requirement: str = key()
    size: str = key()
    gguf: str = key()
    wheel: Optional[str] = key(check=values.existing_file)


@dataclass
class Model:
    name: str = key()
    path: Optional[str] = key()        # checked with the cache it may be built into (check.py: model_path)
    cache_path: Optional[str] = key(neutral="where model.path (kept: the folder loaded) points by default")
    hub_id: Optional[str] = key(neutral="a download name; model.path (kept) is what was loaded")
    dtype: Literal[tuple(DTYPES)] = key()
    lr_key: Optional[str] = key(neutral="which method key train.lr (kept, resolved) was taken from")
    tiny: Optional[Tiny] = key()
    gguf_wheel: Optional[GgufWheel] = key()


@dataclass
class Method:
    name: Literal[tuple(all_methods())] = key()
    params: dict[str, Any] = key()     # the method's typed signature decides (check.py: method_params)
    target_modules: list[str] = key()
    lr: float = key(gt=0, neutral="where train.lr (kept, resolved) was taken from")
    demo_lr: Optional[float] = key(gt=0, neutral="where train.lr (kept, resolved) was taken from")
    # the fused Hadamard op's options: typed, like params, by the signature of the methods that declare them
    fused: Optional[Any] = key(neutral="HiRA's fused op computes the plain formula's numbers")
    fused_chunk_elems: Optional[Any] = key(neutral="HiRA's fused op computes the plain formula's numbers")


@dataclass
class Task:
    name: str = key()
    format: Literal[tuple(FORMATS)] = key()
    data_dir: str = key()              # an input, or for a synthetic task written on first use (check.py: data_dir)
    train_file: str = key()
    test_subsets: list[str] = key()    # each a subset of task.format (check.py: test_subsets)
    val_size: int = key(ge=1)
    split_seed: int = key(ge=0)
    train_limit: Optional[int] = key(ge=1)
    epochs: int = key(ge=1, neutral="where train.epochs (kept) was taken from")
    cutoff_len: int = key(ge=2)
    loss_on: Literal[LOSS_ON] = key()
    num_beams: int = key(ge=1)
    max_new_tokens: int = key(ge=1)
    synthetic: Optional[dict[str, Any]] = key()  # typed by the format: its synthetic_settings (check.py)
    tokenized_dir: Optional[str] = key()         # an output: the tokenization cache (default <data_dir>/.tokenized)


@dataclass
class Hardware:
    name: str = key()
    device: str = key(check=values.device)
    ds_config: str = key(check=values.existing_file)
    micro_batch_size: int = key(ge=1)
    torch_threads: Optional[int] = key(ge=1)


# --- configs/train.yaml -----------------------------------------------------------------------------------------------

@dataclass
class Data:
    group_by_length: bool = key()
    mega_batch: int = key(ge=1)


@dataclass
class Train:
    lr: float = key(gt=0)
    weight_decay: float = key(ge=0)
    adam_betas: list[float] = key(ge=0, lt=1, check=values.pair)  # (beta1, beta2)
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
    keep_last: Optional[int] = key(ge=0, neutral="how many old checkpoints are deleted (the best one is always "
                                                 "kept)")  # null or 0: keep every checkpoint
    on_nonfinite: Literal[ON_NONFINITE] = key()


@dataclass
class Wandb:
    project: str = key()
    entity: Optional[str] = key()
    mode: Literal[WANDB_MODES] = key()
    dir: Optional[str] = key()         # an output


@dataclass
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
    resume: Literal[RESUME] = key(neutral="a resumed run continues exactly where it stopped "
                                          "(tests/test_resume.py)")
    data: Data = key()
    train: Train = key()
    experiment: Optional[str] = key(neutral="the sweep's name; the settings it sets are all in the other keys")
    logger: Literal[LOGGERS] = key(neutral="where metrics are sent besides metrics.jsonl")
    wandb: Wandb = key(neutral="where metrics are sent besides metrics.jsonl")
    evaluate_after_training: bool = key(neutral="whether the run scored itself at the end")
    eval_limit: Optional[int] = key(ge=1, neutral="how many questions it scored then: scores.json says")


# --- configs/eval.yaml ------------------------------------------------------------------------------------------------

@dataclass
class BertScore:
    model: str = key()
    num_layers: int = key(ge=1)
    batch_size: int = key(ge=1)


@dataclass
class EvalScoring:
    mode: Literal[EVAL_MODES] = key()
    engine: Literal[EVAL_ENGINES] = key()
    bertscore: BertScore = key()
    forgetting_text: Optional[str] = key(check=values.existing_file)  # null: the tiny model's world text, else none


@dataclass
class ScoringKeys:
    """eval.yaml's top-level scoring keys, which evaluate_run and evaluate_model also take as arguments."""
    batch_size: int = key(ge=1)
    num_beams: Optional[int] = key(ge=1)        # null: the task's
    max_new_tokens: Optional[int] = key(ge=1)   # null: the task's
    subsets: Optional[list[str]] = key()
    limit: Optional[int] = key(ge=1)
    device: Optional[str] = key(check=values.device)


@dataclass
class Scoring(ScoringKeys, EvalScoring):
    """The settings the evaluator scores with: eval.yaml's scoring keys and eval.*, merged into one mapping
    (hira/evaluation/evaluator.py: eval_settings)."""


@dataclass
class EvalConfig(ScoringKeys):
    """configs/eval.yaml: a training run's checkpoints, or model= with task= (a model no run made)."""
    model: Optional[Model] = key()
    task: Optional[Task] = key()
    run_dir: str = key()               # a training run's folder (hira.cli.check_eval_args), or an output
    adapter: Optional[str] = key(check=values.peft_folder)
    checkpoints: str = key(check=values.checkpoint_choice)
    watch: bool = key()
    poll_s: float = key(gt=0)
    watch_timeout_s: Optional[float] = key(gt=0)
    eval: EvalScoring = key()
    train: Optional[Any] = key()       # the training settings a task config sets beside it: eval.py ignores them
