"""pydantic behind the schema (hira/config/schema.py, check.py): what the library would let through or say worse,
and the conventions the schema's fields keep. The bad values each key refuses are in tests/test_config_schema.py."""

import copy
import dataclasses
import typing

import pytest
from omegaconf import open_dict

from hira.config import schema
from hira.config.check import check_section
from hira.config.command_line import composed
from hira.errors import UserError


@pytest.fixture(scope="module")
def train_cfg():
    with composed("train", []) as cfg:
        return cfg


def error_of(cfg, change) -> str:
    cfg = copy.deepcopy(cfg)
    with open_dict(cfg):
        change(cfg)
    with pytest.raises(UserError) as err:
        check_section(cfg, schema.TrainConfig)
    return str(err.value)


def test_a_mistyped_key_is_named_before_the_key_it_leaves_missing(train_cfg):
    def mistype(cfg):
        cfg.train.lrr = cfg.train.pop("lr")
    assert error_of(train_cfg, mistype).startswith("train.lrr: unknown key; did you mean train.lr? valid keys of train: ")


def test_resume_takes_false_not_a_number_for_it(train_cfg):
    """pydantic's Literal takes 0 for False; resume=0 would pass and resume the run."""
    assert error_of(train_cfg, lambda cfg: setattr(cfg, "resume", 0)) == "resume=0: valid: auto, strict, false"


def test_an_interpolation_that_fails_is_one_line_naming_key_and_value(train_cfg):
    message = error_of(train_cfg, lambda cfg: setattr(cfg.train, "lr", "${nope}"))
    assert message == "train.lr=${nope} cannot be resolved: Interpolation key 'nope' not found"


def test_an_optional_section_says_null_is_valid(train_cfg):
    message = error_of(train_cfg, lambda cfg: setattr(cfg.model, "tiny", 5))
    assert message.startswith("model.tiny=5: valid: a mapping with keys seed, hidden_size, ") and message.endswith(
        " or null")


def sections(section=schema.TrainConfig, seen=None):
    seen = set() if seen is None else seen
    if section in seen:
        return
    seen.add(section)
    yield section
    for hint in typing.get_type_hints(section).values():
        for inner in (hint, *typing.get_args(hint)):
            if dataclasses.is_dataclass(inner):
                yield from sections(inner, seen)


@pytest.mark.parametrize("top", [schema.TrainConfig, schema.EvalConfig, schema.Scoring])
def test_a_key_may_be_absent_exactly_when_null_is_valid(top):
    """key(None) on every Optional (or Any) field and on no other: pydantic requires a field without a default."""
    for section in sections(top):
        hints = typing.get_type_hints(section)
        for f in dataclasses.fields(section):
            nullable = hints[f.name] is typing.Any or type(None) in typing.get_args(hints[f.name])
            assert (f.default is None) == nullable, f"{section.__name__}.{f.name}"
