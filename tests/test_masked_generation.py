"""Masked-denoising generation shared by MLM and MDLM: layout, invariants, knobs and errors (tiny random models)."""

import pytest
import torch
from generation_contract import SPECIAL_IDS, GenerationContract
from xlm_hf.modeling.configuration_mdlm import MDLMConfig
from xlm_hf.modeling.configuration_mlm import MLMConfig
from xlm_hf.modeling.modeling_mdlm import MDLMForMaskedDiffusionLM
from xlm_hf.modeling.modeling_mlm import MLMForMaskedLM

MASK, BOS, PAD = 2, 4, 0
TINY = dict(
    vocab_size=27,
    hidden_size=32,
    num_hidden_layers=2,
    num_attention_heads=2,
    intermediate_size=64,
    max_position_embeddings=48,
)


def make_model(family: str, scale: float = 0.5, **overrides):
    torch.manual_seed(0)
    if family == "mlm":
        model = MLMForMaskedLM(MLMConfig(**{**TINY, **overrides}))
    else:
        model = MDLMForMaskedDiffusionLM(MDLMConfig(**{**TINY, "time_embedding_dim": 16, **overrides}))
    with torch.no_grad():  # a random, non-degenerate model: zero-init output and adaLN would make logits flat
        for param in model.parameters():
            param.add_(torch.randn_like(param) * scale)
    return model.eval()


@pytest.fixture(scope="module", params=["mlm", "mdlm"])
def family_model(request):
    return request.param, make_model(request.param)


def unmask_kwargs(family: str) -> dict:
    """The `unmask` sampler (MLM's only one; MDLM offers it besides `ancestral`)."""
    return {"sampler": "unmask"} if family == "mdlm" else {}


def test_plain_tokenizer_prompts_get_the_family_layout(family_model, star_tokenizer):
    family, model = family_model
    batch = star_tokenizer(["3 4 5 6", "7 8"], return_tensors="pt", padding=True)
    out = model.generate(**batch, max_new_tokens=5, num_steps=5, seed=0)
    seqs = out.sequences
    assert seqs.shape == (2, 4 + 1 + 5)
    assert out.output_start_idx == 5
    # prompts stay left-padded and end in [BOS]; the new slot has no [MASK] left
    assert seqs[0, :4].tolist() == batch["input_ids"][0].tolist()
    assert seqs[1, :2].tolist() == [PAD, PAD] and seqs[1, 2:4].tolist() == batch["input_ids"][1, 2:].tolist()
    assert seqs[:, 4].tolist() == [BOS, BOS]
    assert not bool(seqs.eq(MASK).any())


def test_prompts_already_ending_in_bos_get_no_second_bos(family_model):
    family, model = family_model
    ids = torch.tensor([[0, 9, 10, BOS], [11, 12, 13, BOS]])
    out = model.generate(input_ids=ids, attention_mask=ids.ne(0).long(), max_new_tokens=3, seed=0)
    assert out.sequences.shape == (2, 7)
    assert out.sequences[:, :4].tolist() == ids.tolist()


@pytest.mark.parametrize("order", ["random", "top_prob", "prob_diff", "entropy"])
def test_sampler_never_changes_prompt_or_unmasked_tokens(family_model, order):
    family, model = family_model
    # a prompt with its own [MASK] (filled too) and a left-padded row
    ids = torch.tensor([[9, MASK, 11, 12], [0, 0, 13, 14]])
    mask = ids.ne(0).long()
    out = model.generate(
        input_ids=ids,
        attention_mask=mask,
        max_new_tokens=6,
        num_steps=4,
        unmasking_order=order,
        do_sample=True,
        seed=1,
        output_history=True,
        **unmask_kwargs(family),
    )
    states = [torch.cat([ids, torch.full((2, 1), BOS), torch.full((2, 6), MASK)], 1), *out.history]
    for before, after in zip(states, states[1:]):
        changed = before.ne(after)
        assert bool(before[changed].eq(MASK).all()), "only [MASK] positions may change"
        assert not bool(after[changed].eq(MASK).any())
    final = out.sequences
    assert final[0, [0, 2, 3]].tolist() == [9, 11, 12] and final[0, 1] != MASK
    assert final[1, :4].tolist() == [0, 0, 13, 14]
    assert not bool(final.eq(MASK).any())


def test_history_has_one_entry_per_step_and_each_step_commits_tokens(family_model):
    family, model = family_model
    out = model.generate(
        input_ids=torch.tensor([[9, 10]]),
        max_new_tokens=8,
        num_steps=3,
        output_history=True,
        seed=0,
        **unmask_kwargs(family),
    )
    assert len(out.history) == 3 == int(out.steps_taken[0])
    remaining = [int(state.eq(MASK).sum()) for state in out.history]
    # ceil(masked / steps_left): 8 -> 5 -> 2 -> 0
    assert remaining == [5, 2, 0]


def test_threshold_rule_commits_at_least_one_token_per_step(family_model):
    family = family_model[0]
    model = make_model(family, scale=0.05)  # unsaturated probabilities: every uncertainty is well above 1e-9
    prompt = torch.tensor([[9, 10, 11]])
    tiny = model.generate(
        input_ids=prompt,
        max_new_tokens=6,
        num_steps=6,
        threshold=1e-9,
        unmasking_order="top_prob",
        temperature=0.0,
        output_history=True,
        **unmask_kwargs(family),
    )
    counts = [int(s.eq(MASK).sum()) for s in tiny.history]
    assert counts == [5, 4, 3, 2, 1, 0]  # a threshold too small for anything still commits one token per step
    large = model.generate(
        input_ids=prompt,
        max_new_tokens=6,
        num_steps=6,
        threshold=100.0,
        unmasking_order="entropy",
        temperature=0.0,
        output_history=True,
        **unmask_kwargs(family),
    )
    assert len(large.history) == 1  # every position fits under a large threshold: one step


def test_threshold_takes_positions_while_cumulative_uncertainty_stays_below(family_model):
    family = family_model[0]
    model = make_model(family, scale=0.05)
    prompt = torch.tensor([[9, 10, 11]])
    # replay the first step: commit order and uncertainties from the model's probabilities
    canvas = torch.tensor([[9, 10, 11, BOS] + [MASK] * 6])
    if family == "mdlm":
        sigma = model.noise_schedule.sigma(
            model.noise_schedule.t_from_mask_probability(torch.tensor([1.0])).clamp(0, 1)
        )
        logits = model(input_ids=canvas, noise_level=sigma).logits[0, 4:]
    else:
        logits = model(input_ids=canvas).logits[0, 4:]
    logits[:, MASK] = float("-inf")
    uncertainty = 1 - logits.softmax(-1).max(-1).values
    ordered = uncertainty.sort().values
    threshold = (
        float(ordered[:3].sum().detach()) + 1e-6
    )  # room for exactly 4 positions (3 before the 4th sum below it)
    out = model.generate(
        input_ids=prompt,
        max_new_tokens=6,
        num_steps=6,
        threshold=threshold,
        unmasking_order="top_prob",
        temperature=0.0,
        output_history=True,
        **unmask_kwargs(family),
    )
    assert int(out.history[0][0, 4:].ne(MASK).sum()) == 4


def test_fixed_seed_gives_identical_samples_and_other_seeds_differ(family_model):
    family, model = family_model
    kwargs = dict(input_ids=torch.tensor([[9, 10], [11, 12]]), max_new_tokens=10, num_steps=5, do_sample=True)
    a = model.generate(**kwargs, seed=123).sequences
    b = model.generate(**kwargs, seed=123).sequences
    c = model.generate(**kwargs, generator=torch.Generator().manual_seed(123)).sequences
    others = [model.generate(**kwargs, seed=s).sequences for s in range(4)]
    assert torch.equal(a, b) and torch.equal(a, c)
    assert any(not torch.equal(a, o) for o in others)


def test_semi_autoregressive_blocks_finish_left_to_right(family_model):
    family, model = family_model
    out = model.generate(
        input_ids=torch.tensor([[9, 10]]),
        max_new_tokens=8,
        block_size=4,
        num_steps=4,
        output_history=True,
        seed=0,
        **unmask_kwargs(family),
    )
    slot_history = [state[0, 3:] for state in out.history]
    assert len(slot_history) == 4
    for state in slot_history[:2]:
        assert bool(state[4:].eq(MASK).all()), "the second block waits for the first"
    assert not bool(slot_history[1][:4].eq(MASK).any()), "the first block is done after its two steps"
    assert not bool(slot_history[-1].eq(MASK).any())


def test_infilling_fills_only_the_masks_and_adds_nothing(family_model, star_tokenizer):
    family, model = family_model
    batch = star_tokenizer(["3 [MASK] 5 [MASK] [MASK] 8"], return_tensors="pt")
    ids = batch["input_ids"]
    assert int(ids.eq(MASK).sum()) == 3
    out = model.generate(**batch, max_new_tokens=0, seed=0, **unmask_kwargs(family))
    assert out.sequences.shape == ids.shape
    keep = ids.ne(MASK)
    assert torch.equal(out.sequences[keep], ids[keep])
    assert not bool(out.sequences.eq(MASK).any())


def test_unconditional_generation(family_model):
    family, model = family_model
    out = model.generate(max_new_tokens=7, num_return_sequences=3, seed=0)
    assert out.sequences.shape == (3, 8)
    assert out.sequences[:, 0].tolist() == [BOS] * 3
    assert not bool(out.sequences.eq(MASK).any())
    plain = model.generate(max_new_tokens=7, num_return_sequences=2, prompt_layout="none", seed=0)
    assert plain.sequences.shape == (2, 7)


def test_top_k_one_sampling_and_greedy_agree(family_model):
    family, model = family_model
    kwargs = dict(
        input_ids=torch.tensor([[9, 10, 11]]),
        max_new_tokens=6,
        num_steps=6,
        seed=0,
        unmasking_order="top_prob",
        **unmask_kwargs(family),
    )
    greedy = model.generate(**kwargs).sequences
    assert torch.equal(greedy, model.generate(**kwargs, do_sample=True, top_k=1).sequences)
    # temperature=0 without do_sample: the greedy spelling of configs saved before do_sample existed
    assert torch.equal(greedy, model.generate(**kwargs, temperature=0.0).sequences)


def test_suppressed_tokens_are_never_generated(family_model):
    family, model = family_model
    out = model.generate(
        max_new_tokens=20,
        num_return_sequences=4,
        do_sample=True,
        temperature=2.0,
        seed=0,
        suppress_tokens=list(range(0, 10)),
    )
    assert bool(out.sequences[:, 1:].ge(10).all())


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(max_new_tokens=40), "max_position_embeddings"),
        (dict(max_new_tokens=10, block_size=4), "block_size=4 must divide"),
        (dict(top_k=3, top_p=0.9), "not both"),
        (dict(max_new_tokens=8, block_size=2, num_steps=3), "every block needs at least one step"),
        (dict(threshold=0.1, unmasking_order="random"), "threshold needs a confidence"),
        (dict(num_beams=2), "unknown arguments"),
        (dict(temperature=-1.0), "temperature"),
        (dict(do_sample=True, temperature=0.0), "temperature=0 cannot be combined with do_sample=True"),
        (dict(do_sample="yes"), "do_sample must be True or False"),
    ],
)
def test_bad_input_raises_one_clear_value_error(family_model, kwargs, message):
    family, model = family_model
    prompt = torch.tensor([[9] * 10])
    with pytest.raises(ValueError, match=message):
        model.generate(input_ids=prompt, **kwargs)


def test_mlm_rejects_the_ancestral_sampler():
    with pytest.raises(ValueError, match="sampler must be one of"):
        make_model("mlm").generate(input_ids=torch.tensor([[9]]), sampler="ancestral")


def test_unconditional_generation_needs_new_tokens(family_model):
    with pytest.raises(ValueError, match="Unconditional generation needs"):
        family_model[1].generate(max_new_tokens=0)


class TestMLMGenerationContract(GenerationContract):
    family = "mlm"
    generation_options = {"num_steps": 4, "do_sample": False, "suppress_tokens": SPECIAL_IDS}
    history_options = {"output_history": True}
    supports_infilling = True
    infill_options = {"max_new_tokens": 0}

    def replay_history(self, output, row):
        return self.real_tokens(output.history[-1], row)  # the canvas after the last step


class TestMDLMGenerationContract(TestMLMGenerationContract):
    family = "mdlm"
    config_overrides = {"time_embedding_dim": 16}
    generation_options = {**TestMLMGenerationContract.generation_options, "sampler": "unmask"}


def test_samplers_are_classes_with_a_step_that_generate_calls(family_model, monkeypatch):
    """A sampler is a `MaskedSampler` subclass listed in `SAMPLER_CLASSES`: `generate` calls its `step` once per
    step with the positions to decide, and keeps what it returns."""
    from xlm_hf.modeling import generation_masked

    family, model = family_model
    calls = []

    class FillWithSeven(generation_masked.MaskedSampler):
        def step(self, canvas, canvas_mask, candidates, step, num_steps):
            calls.append((step, num_steps, int(candidates.sum())))
            # the leftmost masked position of each row
            first = candidates & (candidates.long().cumsum(-1) == 1)
            return torch.where(first, torch.full_like(canvas, 7), canvas)

    monkeypatch.setitem(generation_masked.SAMPLER_CLASSES, "unmask", FillWithSeven)
    out = model.generate(
        input_ids=torch.tensor([[9, 10]]), max_new_tokens=3, num_steps=3, **unmask_kwargs(family)
    )
    assert out.sequences[0, out.output_start_idx :].tolist() == [7, 7, 7]
    assert calls == [(0, 3, 3), (1, 3, 2), (2, 3, 1)]
    assert out.steps_taken.tolist() == [3]
