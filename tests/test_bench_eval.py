"""Smoke test of hira-bench-eval on a random 2-layer Llama: every variant runs, and the benchmark's own claims (the
same outputs across variants, the option log-likelihoods within 1e-4) hold where it reports them."""

import pytest
import torch

from benchmarks import bench_eval as bench

SETTINGS = ["--questions", "8", "--max-new-tokens", "3", "--batch-size", "4", "--prefill-batch-sizes", "2,4",
            "--threads", "1"]


@pytest.mark.slow  # eleven decoding and scoring passes: a benchmark's smoke test, like bench_adapters'
def test_every_variant_decodes_the_same_and_reports_its_rate(tmp_path, llama, capsys):
    from helpers import WORDS, word_tokenizer

    llama.config.update({"pad_token_id": 0, "bos_token_id": 1, "eos_token_id": 2})
    llama.save_pretrained(tmp_path / "lm")
    word_tokenizer(WORDS).save_pretrained(tmp_path / "lm")
    threads = torch.get_num_threads()
    try:
        results = bench.measure(["--model-path", str(tmp_path / "lm"), *SETTINGS])
    finally:
        torch.set_num_threads(threads)
    generation, loglik = results["generation"], results["loglik"]
    assert list(generation) == ["hf_batch1", "hf_batched", "hf_sorted", "prefill@2", "prefill@4"] and list(loglik) == [
        "loglik hf", "loglik prefill@2", "loglik prefill@4"]
    for rows, reference in ((generation, "hf_batched"), (loglik, "loglik hf")):
        assert all(row["n"] == 8 and row["seconds"] > 0 and bench.same_outputs(row, rows[reference])
                   for row in rows.values())
    assert bench.loglik_gap(loglik) < 1e-4
    assert set(results["prompt_tokens"]) == set(bench.FORMATS)
    report = capsys.readouterr().out
    assert "against hf_batch1:" in report and "largest |prefill - hf| option log-likelihood" in report
    tokens = float(report.split("mean answer tokens: ")[1].split()[0])
    assert 0 < tokens <= 3  # at most max_new_tokens, counted without special tokens


def test_skip_takes_the_variants_names_only(capsys):
    assert bench.parse_args(["--skip", "hf_batch1,prefill"]).skip == {"hf_batch1", "prefill"}
    with pytest.raises(SystemExit):
        bench.parse_args(["--skip", "a,hf_sorted"])
    assert "--skip a: no such variant; valid: hf_batch1, hf_batched, hf_sorted, prefill, loglik" in capsys.readouterr().err
