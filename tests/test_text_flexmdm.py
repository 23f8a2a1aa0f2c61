"""FlexMDM on text: it trains on padded text rows (and refuses packed ones), exports a folder whose unconditional
samples decode to readable text where xlm_hf cannot be imported, and runs the three text eval kinds; its held-out
perplexity is the ELBO of its insert-and-unmask chain, checked against a model whose likelihood is known in
closed form."""

import json
import math
from types import SimpleNamespace

import pytest
import torch
from isolation import run_without_xlm_hf
from text_corpus import TINY_TEXT_OVERRIDES, write_corpus
from xlm_hf.modeling.configuration_flexmdm import FlexMDMConfig

from xlm_hf.flexmdm.likelihood import flexmdm_nll
from xlm_hf.jobs import evaluate, prepare_experiment, train


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, data_dir):
    return write_corpus(tmp_path_factory.mktemp("corpus"))


@pytest.fixture(scope="module")
def trained(corpus, tmp_path_factory):
    """A FlexMDM and an ARLM (the judge of generative perplexity), a few steps each on the corpus."""
    out = tmp_path_factory.mktemp("text_flexmdm")
    summaries = {}
    for family in ("flexmdm", "arlm"):
        experiment = prepare_experiment(
            f"text_pydoc_{family}",
            [
                f"data.task=text:{corpus}",
                *TINY_TEXT_OVERRIDES,
                *(["generation.num_steps=8"] if family == "flexmdm" else []),
                f"training.output_dir={out / family}",
            ],
        )
        summaries[family] = train(experiment)
    return out, summaries


def test_flexmdm_trains_on_padded_text_rows_and_exports_its_tokenizer(trained):
    out, summaries = trained
    assert summaries["flexmdm"]["global_step"] == 4 and summaries["flexmdm"]["eval_lm_loss"] > 0
    folder = out / "flexmdm"
    assert {"tokenizer.json", "tokenizer_config.json", "model.safetensors"} <= {
        p.name for p in folder.iterdir()
    }
    card = (folder / "README.md").read_text()
    assert "byte-level BPE of 300 tokens" in card and "one document per row" in card


def test_flexmdm_refuses_packed_rows(corpus, tmp_path):
    overrides = [
        f"data.task=text:{corpus}",
        "data.packing=blocks",
        *TINY_TEXT_OVERRIDES,
        f"training.output_dir={tmp_path}",
    ]
    with pytest.raises(ValueError, match="set data.packing=pad"):
        train(prepare_experiment("text_pydoc_flexmdm", overrides))


def test_samples_and_continuations_decode_to_text_without_xlm_hf(trained, tmp_path):
    out, _ = trained
    code = f"""
        import json
        import torch
        from transformers import AutoModel, AutoTokenizer
        model = AutoModel.from_pretrained({str(out / "flexmdm")!r}, trust_remote_code=True)
        tokenizer = AutoTokenizer.from_pretrained({str(out / "flexmdm")!r})
        output = model.generate(num_return_sequences=3, do_sample=True, max_new_tokens=12, seed=0)
        new = [row[mask].tolist() for row, mask in zip(output.sequences, output.new_token_mask)]
        texts = tokenizer.batch_decode(output.sequences, skip_special_tokens=True)
        prompt = tokenizer(["Return the"], return_tensors="pt")  # the text's start (prompt_layout: lm)
        row = model.generate(**prompt, max_new_tokens=6, seed=0).sequences[0]
        row = row[row.ne(tokenizer.pad_token_id)]
        starts_with_bos = int(row[0]) == tokenizer.bos_token_id
        continued = tokenizer.decode(row, skip_special_tokens=True)
        print("REPORT" + json.dumps([texts, new, tokenizer.all_special_ids, continued, starts_with_bos]))
    """
    result = run_without_xlm_hf(code, cwd=str(tmp_path))
    report = json.loads(result.stdout.split("REPORT", 1)[1].strip().splitlines()[0])
    texts, new, special, continued, starts_with_bos = report
    assert starts_with_bos and continued.startswith("Return the")  # `[BOS] prompt ... [EOS]`, as text rows
    assert len(texts) == 3 and any(new)
    for text, ids in zip(texts, new):
        assert len(ids) <= 12 and not set(ids) & set(special)  # generated tokens are text tokens
        assert not {"\u0120", "\u010a"} & set(text)  # byte-level BPE's space and newline symbols are decoded


def test_flexmdm_runs_the_text_eval_kinds(trained):
    out, _ = trained
    judge = out / "arlm"
    results = evaluate(
        str(out / "flexmdm"),
        split="validation",
        limit=6,
        eval_tasks={
            "ppl": {"kind": "perplexity", "num_samples": 4},
            "gen": {
                "kind": "generative_perplexity",
                "num_samples": 3,
                "max_new_tokens": 8,
                "judge": str(judge),
            },
            "fill": {"kind": "infill", "gap_fraction": 0.4, "max_new_tokens": 6},
        },
    )
    metrics = results["metrics"]
    assert metrics["eval_ppl_is_bound"] == 1.0 and math.isfinite(metrics["eval_ppl_nll"])
    assert metrics["eval_ppl_nll"] > 0 and metrics["eval_ppl_perplexity"] == pytest.approx(
        math.exp(metrics["eval_ppl_nll"])
    )
    assert metrics["eval_gen_num_scored"] + metrics["eval_gen_num_unscored"] == 3
    assert "eval_fill_infill_length_ratio" in metrics and "eval_fill_infill_token_accuracy" not in metrics
    samples = next((out / "flexmdm" / "predictions" / "gen").glob("step=*.jsonl")).read_text().splitlines()
    assert len(samples) == 3 and all(json.loads(row)["num_tokens"] <= 8 for row in samples)
    rows = [
        json.loads(r)
        for r in next((out / "flexmdm" / "predictions" / "fill").glob("*.jsonl")).read_text().splitlines()
    ]
    assert len(rows) == metrics["eval_fill_infill_examples"] == 6
    for row in rows:
        # free length: one [MASK] marks the gap, at most max_new_tokens fill it, the visible text stays around it
        assert row["prompt"].count("[MASK]") == 1 and row["fill_length"] <= 6
        before, after = row["prompt"].split(" [MASK] ") if " [MASK] " in row["prompt"] else (None, None)
        if before is not None:
            # (the row's own [EOS] stays visible in the report, as between packed documents)
            assert row["text"].startswith(before) and row["text"].removesuffix("[EOS]").endswith(after)


# ----- the held-out bound against a model whose likelihood is known ------------------------------------------------


class ConstantRateModel(torch.nn.Module):
    """A FlexMDM whose predictions ignore the canvas: tokens from a fixed distribution `probs`, and `c (1 - t)`
    missing tokens before every position. With the linear schedules each gap then receives a `[MASK]` at the
    constant rate c, so the number of gaps grows as a Yule process: the text has L tokens with probability
    `e^-c (1 - e^-c)^L`, each token drawn from `probs`, and `-log p(x) = c - L log(1 - e^-c) - sum log probs(x_i)`."""

    def __init__(self, c: float, probs: list[float]):
        super().__init__()
        self.config = FlexMDMConfig(
            vocab_size=len(probs),
            hidden_size=8,
            num_hidden_layers=1,
            num_attention_heads=1,
            intermediate_size=8,
            max_position_embeddings=16,
            pad_token_id=0,
            mask_token_id=2,
            eos_token_id=3,
            bos_token_id=4,
        )
        self.c, self.log_probs = c, torch.tensor(probs, dtype=torch.float64).log()
        self.device = torch.device("cpu")

    def exact_nll(self, text: list[int]) -> float:
        c = self.c
        return c - len(text) * math.log(1 - math.exp(-c)) - float(self.log_probs[text].sum())

    def forward(self, input_ids, attention_mask, t):
        rows, width = input_ids.shape
        gap_lengths = self.c * (1 - t.double())[:, None].expand(rows, width)
        return SimpleNamespace(logits=self.log_probs.expand(rows, width, -1), gap_lengths=gap_lengths)


PROBS = [1e-9] * 5 + [0.5, 0.3, 0.2]  # special ids 0-4 all but impossible


def bound(model: ConstantRateModel, text: list[int], num_samples: int, seed: int = 0) -> float:
    collator = SimpleNamespace(block_size=10)
    ((nll, count),) = flexmdm_nll(
        model, [text], collator, num_samples, torch.Generator().manual_seed(seed), 4096
    )
    assert count == len(text) + 1  # the tokens and the end
    return nll


@pytest.mark.parametrize("c", [0.5, 2.0])
def test_flexmdm_bound_is_the_elbo_and_bounds_the_exact_nll(c):
    model = ConstantRateModel(c, [p / sum(PROBS) for p in PROBS])
    # the empty text: one gap, nothing missing; the bound is exact (the only way to make it is to insert nothing)
    # (up to the stratified times' own error, below 1 / num_samples)
    assert bound(model, [], 4096) == pytest.approx(model.exact_nll([]), rel=1 / 4096)
    # one token: worked out by hand, the insertion terms integrate to 1.5 c - log c and the unmasking term to the
    # token's cross-entropy; Monte Carlo with 20 000 times lands within 0.03 of it
    one = bound(model, [5], 20_000)
    assert one == pytest.approx(1.5 * c - math.log(c) - float(model.log_probs[5]), abs=0.03)
    assert one > model.exact_nll([5])
    # longer texts: still above the exact NLL (the noising chain is not the model's posterior over paths)
    for text in ([5, 6, 7], [7, 7, 5, 6, 5]):
        assert bound(model, text, 2_000) > model.exact_nll(text)
