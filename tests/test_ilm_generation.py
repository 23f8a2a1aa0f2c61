"""ILM insertion decoding: layout, stopping, batching, infilling, history, config, export, errors."""

import json

import pytest
import torch
from generation_contract import GenerationContract
from isolation import run_without_xlm_hf
from torch import nn
from transformers import LogitsProcessorList, SuppressTokensLogitsProcessor
from xlm_hf.modeling.generation_ilm import sample_from_scores

from xlm_hf.export import export_model
from xlm_hf.ilm import ILMConfig, ILMGenerationConfig, ILMModelForInsertionLM
from xlm_hf.tokenization import build_number_tokenizer

CLS, MASK, BOS, PAD = 1, 2, 4, 0


def tiny_ilm(dtype=torch.float64, **overrides) -> ILMModelForInsertionLM:
    torch.manual_seed(0)
    options = dict(
        vocab_size=27, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, max_position_embeddings=40
    )
    options.update(overrides)
    return ILMModelForInsertionLM(ILMConfig(**options)).to(dtype).eval()


def real_tokens(sequences: torch.Tensor, row: int) -> list[int]:
    return [t for t in sequences[row].tolist() if t != PAD]


def is_subsequence(needle: list[int], haystack: list[int]) -> bool:
    it = iter(haystack)
    return all(any(x == y for y in it) for x in needle)


def force_stop_probability(model: ILMModelForInsertionLM, p_complete: float) -> None:
    """Replaces the stopping classifier by a constant: p("complete") = p_complete for every row."""
    classifier = nn.Linear(model.config.hidden_size, 2, bias=True).to(model.dtype)
    with torch.no_grad():
        classifier.weight.zero_()
        classifier.bias.copy_(torch.tensor([torch.logit(torch.tensor(p_complete)).item(), 0.0]))
    model.stopping_head.classifier = classifier


@pytest.fixture(scope="module")
def tokenizer():
    return build_number_tokenizer(20)


def test_plain_prompts_from_the_tokenizer_are_laid_out_and_never_moved(tokenizer):
    model = tiny_ilm()
    prompts = ["3 4 5 6 7", "8", "9 10 11"]
    encoded = tokenizer(prompts, return_tensors="pt", padding=True)
    assert encoded["attention_mask"][1, 0] == 0  # left-padded, as the tokenizer is built
    out = model.generate(**encoded, max_new_tokens=5, stopping_threshold=1.0)
    assert out.sequences.shape[0] == 3
    for row, prompt in enumerate(prompts):
        ids = tokenizer(prompt)["input_ids"]
        tokens = real_tokens(out.sequences, row)
        assert tokens[: len(ids) + 2] == [
            CLS,
            *ids,
            BOS,
        ]  # the prompt is a prefix: nothing inserted inside it
        assert len(tokens) == len(ids) + 2 + 5
        assert not set(tokens[len(ids) + 2 :]) & {CLS, MASK, BOS, PAD, 3}  # special tokens are suppressed
        assert tokenizer.decode(out.sequences[row], skip_special_tokens=True).startswith(prompt)
    # tokenizers that also return token_type_ids (BERT-style) are accepted as well
    typed = model.generate(
        **encoded,
        token_type_ids=torch.zeros_like(encoded["input_ids"]),
        max_new_tokens=5,
        stopping_threshold=1.0,
    )
    assert torch.equal(typed.sequences, out.sequences)


def test_lm_layout_grows_the_prompt_anywhere_but_keeps_it_in_order(tokenizer):
    model = tiny_ilm()
    ids = torch.tensor([[9, 10, 11, 12]])
    out = model.generate(
        input_ids=ids, prompt_layout="lm", max_new_tokens=6, stopping_threshold=1.0, return_history=True
    )
    tokens = real_tokens(out.sequences, 0)
    assert tokens[:2] == [CLS, BOS] and len(tokens) == 2 + 4 + 6
    assert is_subsequence([9, 10, 11, 12], tokens)
    assert (out.history_positions[0] >= 2).all()  # never before [BOS]


def test_a_row_that_predicts_stop_at_step_zero_inserts_nothing():
    model = tiny_ilm()
    force_stop_probability(model, 0.95)
    ids = torch.tensor([[0, 9, 10], [11, 12, 13]])
    out = model.generate(
        input_ids=ids, attention_mask=ids.ne(0).long(), max_new_tokens=5, return_history=True
    )
    assert real_tokens(out.sequences, 0) == [CLS, 9, 10, BOS]
    assert real_tokens(out.sequences, 1) == [CLS, 11, 12, 13, BOS]
    assert out.num_steps == 1
    assert (out.history_positions == -1).all()
    # below the threshold the same rows keep inserting; min_new_tokens overrides the stopping head
    below = model.generate(
        input_ids=ids, attention_mask=ids.ne(0).long(), max_new_tokens=5, stopping_threshold=0.99
    )
    assert len(real_tokens(below.sequences, 0)) == 4 + 5
    forced = model.generate(
        input_ids=ids, attention_mask=ids.ne(0).long(), max_new_tokens=5, min_new_tokens=2
    )
    assert len(real_tokens(forced.sequences, 0)) == 4 + 2


def test_batched_rows_of_different_lengths_match_each_row_alone(tokenizer):
    model = tiny_ilm()
    prompts = ["3 4 5 6 7 8", "9", "10 11 12", ""]
    encoded = tokenizer(prompts, return_tensors="pt", padding=True)
    with (
        torch.no_grad()
    ):  # a sharper random stopping head, which crosses the threshold at different steps per row
        model.stopping_head.classifier.weight.mul_(500)
    options = dict(max_new_tokens=7, stopping_threshold=0.4, return_history=True)
    batched = model.generate(**encoded, **options)
    lengths = set()
    for row, prompt in enumerate(prompts):
        alone = model.generate(**tokenizer([prompt], return_tensors="pt"), **options)
        assert real_tokens(alone.sequences, 0) == real_tokens(batched.sequences, row)
        lengths.add(len(real_tokens(alone.sequences, 0)) - len(tokenizer(prompt)["input_ids"]))
    # right padding gives the same result: generate reads the real tokens whatever the padding side
    tokenizer_right = build_number_tokenizer(20)
    tokenizer_right.padding_side = "right"
    right = model.generate(**tokenizer_right(prompts, return_tensors="pt", padding=True), **options)
    assert torch.equal(right.sequences, batched.sequences)
    assert len(lengths) > 1, "the rows should stop after different numbers of insertions"


def test_infilling_inserts_only_into_the_masked_gaps_and_keeps_the_text():
    model = tiny_ilm()
    # text: 9 [MASK] 10 11 [MASK]   -> insertions after 9 and after 11 only
    ids = torch.tensor([[9, MASK, 10, 11, MASK]])
    out = model.generate(input_ids=ids, max_new_tokens=6, stopping_threshold=1.0, return_history=True)
    tokens = real_tokens(out.sequences, 0)
    assert tokens[:3] == [CLS, BOS, 9]
    assert len(tokens) == 5 + 6
    assert is_subsequence([9, 10, 11], tokens)
    i10, i11 = tokens.index(10), tokens.index(11)
    assert i11 == i10 + 1  # the gap between 10 and 11 was not masked
    assert MASK not in tokens


def test_explicit_insertion_mask_for_laid_out_rows():
    model = tiny_ilm()
    ids = torch.tensor([[CLS, BOS, 9, 10, 11]])
    allowed = torch.tensor([[0, 0, 0, 1, 0]])  # only the gap between 10 and 11
    out = model.generate(input_ids=ids, insertion_mask=allowed, max_new_tokens=4, stopping_threshold=1.0)
    tokens = real_tokens(out.sequences, 0)
    assert tokens[:4] == [CLS, BOS, 9, 10] and tokens[-1] == 11 and len(tokens) == 9
    with pytest.raises(ValueError, match="insertion_mask"):
        model.generate(input_ids=torch.tensor([[9, 10]]), insertion_mask=torch.tensor([[1, 1]]))


def test_history_replays_to_the_final_sequences(tokenizer):
    model = tiny_ilm()
    encoded = tokenizer(["3 4 5", "6", "7 8 9 10 11"], return_tensors="pt", padding=True)
    out = model.generate(**encoded, max_new_tokens=6, stopping_threshold=0.52, return_history=True)
    for row in range(3):
        sequence = real_tokens(out.initial_sequences, row)
        for position, token in zip(out.history_positions[row].tolist(), out.history_tokens[row].tolist()):
            if position >= 0:
                sequence.insert(position, token)
        assert sequence == real_tokens(out.sequences, row)


def test_unconditional_generation_starts_from_cls_bos_and_respects_max_length():
    model = tiny_ilm()
    out = model.generate(num_return_sequences=3, max_length=9, stopping_threshold=1.0, do_sample=True, seed=1)
    assert out.sequences.shape == (3, 9)
    for row in range(3):
        tokens = real_tokens(out.sequences, row)
        assert tokens[:2] == [CLS, BOS] and len(tokens) == 9


def test_seed_makes_sampling_reproducible():
    model = tiny_ilm()
    options = dict(
        num_return_sequences=4,
        max_new_tokens=6,
        stopping_threshold=1.0,
        do_sample=True,
        position_do_sample=True,
    )
    a = model.generate(seed=7, **options).sequences
    b = model.generate(seed=7, **options).sequences
    c = model.generate(generator=torch.Generator().manual_seed(8), **options).sequences
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_sample_jointly_inserts_the_most_likely_gap_and_token_pair():
    model = tiny_ilm()
    ids = torch.tensor([[9, 10, 11, 12, 13, 14]])
    layout = torch.tensor([[CLS, BOS, 9, 10, 11, 12, 13, 14]])
    options = dict(prompt_layout="lm", max_new_tokens=1, stopping_threshold=1.0, output_history=True)
    with torch.no_grad():
        logits = model(input_ids=layout, attention_mask=torch.ones_like(layout)).logits[0].double()
    logits[:, [PAD, CLS, MASK, 3, BOS]] = float("-inf")  # the suppressed special tokens
    logits[0] = float("-inf")  # nothing goes before [BOS]
    best_pair = int(logits.flatten().argmax())
    anchor, token = divmod(best_pair, logits.shape[-1])

    joint = model.generate(input_ids=ids, sample_jointly=True, **options)
    assert joint.history_positions[0, 0] == anchor + 1 and joint.history_tokens[0, 0] == token
    # the default rule first takes the gap with the most mass, then its best token
    gap = int(torch.logsumexp(logits, dim=-1).argmax())
    by_gap = model.generate(input_ids=ids, **options)
    assert by_gap.history_positions[0, 0] == gap + 1 and by_gap.history_tokens[0, 0] == logits[gap].argmax()
    assert (gap, int(logits[gap].argmax())) != (anchor, token), "this model should tell the two rules apart"
    # sampling with top_k=1 is the greedy choice; a logits processor acts on every gap's tokens
    top1 = model.generate(input_ids=ids, sample_jointly=True, do_sample=True, top_k=1, seed=0, **options)
    assert torch.equal(top1.sequences, joint.sequences)
    banned = model.generate(
        input_ids=ids,
        sample_jointly=True,
        logits_processor=LogitsProcessorList([SuppressTokensLogitsProcessor([token])]),
        **options,
    )
    assert banned.history_tokens[0, 0] != token


def test_sample_jointly_draws_from_the_joint_distribution():
    model = tiny_ilm()
    ids = torch.tensor([[9, 10, 11]])
    options = dict(prompt_layout="lm", max_new_tokens=1, stopping_threshold=1.0, output_history=True)
    draws = model.generate(
        input_ids=ids, sample_jointly=True, do_sample=True, num_return_sequences=4000, seed=1, **options
    )
    layout = torch.tensor([[CLS, BOS, 9, 10, 11]])
    with torch.no_grad():
        logits = model(input_ids=layout, attention_mask=torch.ones_like(layout)).logits[0].double()
    logits[:, [PAD, CLS, MASK, 3, BOS]] = float("-inf")
    logits[0] = float("-inf")
    expected_gap_mass = logits.flatten().softmax(-1).view_as(logits).sum(-1)[1:]
    anchors = draws.history_positions[:, 0] - 1
    observed_gap_mass = torch.bincount(anchors - 1, minlength=len(expected_gap_mass)).double() / len(anchors)
    assert torch.allclose(observed_gap_mass, expected_gap_mass, atol=0.03)
    with pytest.raises(ValueError, match="position_do_sample"):
        model.generate(input_ids=ids, sample_jointly=True, position_do_sample=True, **options)


def test_samplers_respect_top_k_and_top_p():
    scores = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]])).expand(2000, 4)
    generator = torch.Generator().manual_seed(0)
    assert sample_from_scores(scores, do_sample=False).unique().tolist() == [0]
    top2 = sample_from_scores(scores, True, top_k=2, generator=generator)
    assert set(top2.unique().tolist()) == {0, 1}
    top_p = sample_from_scores(scores, True, top_p=0.85, generator=generator)  # 0.5 + 0.3 < 0.85: keeps three
    assert set(top_p.unique().tolist()) == {0, 1, 2}
    forbidden = scores.clone()
    forbidden[:, 0] = float("-inf")
    assert 0 not in sample_from_scores(forbidden, True, generator=generator).tolist()


def test_generation_config_round_trip_and_validation(tmp_path):
    config = ILMGenerationConfig(
        max_new_tokens=9,
        stopping_threshold=0.7,
        position_do_sample=True,
        position_top_k=2,
        prompt_layout="lm",
        seed=3,
    )
    config.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "generation_config.json").read_text())
    assert saved["position_top_k"] == 2 and "temperature" not in saved  # only what differs from the defaults
    loaded = ILMGenerationConfig.from_pretrained(tmp_path)
    assert type(loaded) is ILMGenerationConfig and loaded == config
    assert loaded.stopping_threshold == 0.7 and loaded.prompt_layout == "lm"

    model = tiny_ilm(dtype=torch.float32)
    model.generation_config = config
    model.save_pretrained(tmp_path / "model")
    reloaded = ILMModelForInsertionLM.from_pretrained(tmp_path / "model")
    assert type(reloaded.generation_config) is ILMGenerationConfig
    assert reloaded.generation_config == config

    for bad in (
        {"stopping_threshold": 0.0},
        {"temperature": 0.0},
        {"top_p": 1.5},
        {"prompt_layout": "x"},
        {"max_steps": 0},
        {"sample_jointly": "yes"},
    ):
        with pytest.raises(ValueError):
            ILMGenerationConfig(**bad)
    with pytest.raises(ValueError, match="unknown arguments"):
        ILMGenerationConfig(num_beams=3)
    with pytest.raises(ValueError, match="does not know"):
        model.generate(input_ids=torch.tensor([[9]]), num_beams=2)


def test_bad_input_is_one_clear_error():
    model = tiny_ilm(max_position_embeddings=12)
    with pytest.raises(ValueError, match="No room left"):
        model.generate(input_ids=torch.tensor([[9] * 10]))  # 10 + [CLS] + [BOS] = 12 = max_length
    with pytest.raises(ValueError, match="No room left"):
        model.generate(input_ids=torch.tensor([[9] * 4]), max_length=6)
    with pytest.raises(ValueError, match="outside the model's vocabulary"):
        model.generate(input_ids=torch.tensor([[9, 27]]))
    with pytest.raises(ValueError, match="outside the model's vocabulary"):
        model.generate(input_ids=torch.tensor([[9, -1]]))
    with pytest.raises(ValueError, match="max_position_embeddings"):
        model.generate(input_ids=torch.tensor([[9]]), max_length=13)
    with pytest.raises(ValueError, match="no \\[BOS\\]"):
        model.generate(input_ids=torch.tensor([[CLS, 9, 10]]))
    with pytest.raises(ValueError, match="attention_mask"):
        model.generate(input_ids=torch.tensor([[9, 10]]), attention_mask=torch.tensor([[1]]))
    # a padding id outside the vocabulary under the mask is fine: only real tokens are checked
    out = model.generate(
        input_ids=torch.tensor([[99, 9]]), attention_mask=torch.tensor([[0, 1]]), max_new_tokens=1
    )
    assert real_tokens(out.sequences, 0)[:3] == [CLS, 9, BOS]


def test_exported_model_generates_without_xlm_hf(tmp_path, tokenizer):
    model = tiny_ilm(dtype=torch.float32)
    model.generation_config = ILMGenerationConfig(max_new_tokens=4, stopping_threshold=1.0)
    export_model(model, tokenizer, tmp_path / "export", "ilm")
    prompts = ["3 4 5", "6"]
    expected = model.generate(**tokenizer(prompts, return_tensors="pt", padding=True)).sequences
    result = run_without_xlm_hf(
        f"""
        import json
        from transformers import AutoModel, AutoTokenizer
        folder = {str(tmp_path / "export")!r}
        model = AutoModel.from_pretrained(folder, trust_remote_code=True)
        tokenizer = AutoTokenizer.from_pretrained(folder)
        out = model.generate(**tokenizer({prompts!r}, return_tensors="pt", padding=True))
        print("CONFIG", type(model.generation_config).__name__, type(model).__module__)
        print("SEQUENCES", json.dumps(out.sequences.tolist()))
        """,
        cwd=str(tmp_path),
    )
    assert "CONFIG ILMGenerationConfig transformers_modules" in result.stdout
    assert json.loads(result.stdout.split("SEQUENCES")[1]) == expected.tolist()


class TestILMGenerationContract(GenerationContract):
    family = "ilm"
    generation_options = {"stopping_threshold": 1.0}  # never stops early: fixed lengths
    history_options = {"output_history": True}
    supports_infilling = True
    infill_options = {"max_new_tokens": 3}
    layout_tokens = 2  # [CLS] prompt [BOS]
    # the plain initialisation: perturbed weights saturate the stopping head to p("complete") = 1.0 exactly
    weight_noise = 0.0

    def replay_history(self, output, row):
        sequence = self.real_tokens(output.initial_sequences, row)
        positions, tokens = output.history_positions[row].tolist(), output.history_tokens[row].tolist()
        for position, token in zip(positions, tokens):
            if position >= 0:
                sequence.insert(position, token)
        return sequence
