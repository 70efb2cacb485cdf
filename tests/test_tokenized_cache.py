"""data.tokenized_cache: the second run reads what the first encoded; any change to the inputs misses."""

import pytest

from hira.data import cache, tokenize
from hira.data.templates import alpaca_prompt
from hira.models.tiny import build_tokenizer

RECORDS = [{"instruction": f"question {i} about apples", "input": "", "output": f"the answer is {i % 3}"}
           for i in range(12)]


@pytest.fixture(scope="module")
def tokenizer():
    return build_tokenizer([alpaca_prompt(r["instruction"]) + r["output"] for r in RECORDS])


def test_second_call_reads_the_cache(tokenizer, tmp_path, monkeypatch):
    expected = tokenize.encode_records(tokenizer, RECORDS, 40, "response")
    assert cache.encode_records_cached(tokenizer, RECORDS, 40, "response", str(tmp_path)) == expected
    assert len(list(tmp_path.glob("*.pt"))) == 1

    def fail(*args):
        raise AssertionError("tokenized again despite the cache")
    monkeypatch.setattr(tokenize, "encode_records", fail)
    assert cache.encode_records_cached(tokenizer, RECORDS, 40, "response", str(tmp_path)) == expected


def test_key_changes_with_every_input(tokenizer):
    key = cache.cache_key(tokenizer, RECORDS, 40, "response")
    edited = [dict(RECORDS[0], output="changed")] + RECORDS[1:]
    other_tokenizer = build_tokenizer(["a different vocabulary entirely"])
    variants = [cache.cache_key(tokenizer, RECORDS, 32, "response"), cache.cache_key(tokenizer, RECORDS, 40, "full"),
                cache.cache_key(tokenizer, edited, 40, "response"), cache.cache_key(other_tokenizer, RECORDS, 40, "response")]
    assert len({key, *variants}) == 5
    assert cache.cache_key(tokenizer, RECORDS, 40, "response") == key  # and is stable


def test_off_when_no_dir(tokenizer, tmp_path):
    assert cache.encode_records_cached(tokenizer, RECORDS, 40, "response", None) == \
        tokenize.encode_records(tokenizer, RECORDS, 40, "response")
