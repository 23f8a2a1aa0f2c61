"""MDLM: noise schedule, ancestral sampler (categorical sampling, final argmax fill) and the cache trick."""

import math

import pytest
import torch
from xlm_hf.modeling.configuration_mdlm import MDLMConfig
from xlm_hf.modeling.modeling_mdlm import MDLMForMaskedDiffusionLM
from xlm_hf.modeling.noise_schedules import LogLinearNoiseSchedule, build_noise_schedule, sample_times

MASK, BOS = 2, 4
TINY = dict(
    vocab_size=27,
    hidden_size=32,
    num_hidden_layers=2,
    num_attention_heads=2,
    intermediate_size=64,
    max_position_embeddings=256,
    time_embedding_dim=16,
)


def make_mdlm(**overrides) -> MDLMForMaskedDiffusionLM:
    torch.manual_seed(0)
    model = MDLMForMaskedDiffusionLM(MDLMConfig(**{**TINY, **overrides}))
    with torch.no_grad():
        for param in model.parameters():
            param.add_(torch.randn_like(param) * 0.3)
    return model.eval()


# ---- schedule ---------------------------------------------------------------------------------------------------


def test_loglinear_sigma_and_time_round_trip():
    schedule = LogLinearNoiseSchedule(sigma_max=10.0)
    t = torch.linspace(0, 1, 101, dtype=torch.float64)
    sigma = schedule.sigma(t)
    assert float(sigma[0]) == 0.0
    assert math.isclose(float(sigma[-1]), 10.0, rel_tol=1e-9)
    assert torch.allclose(schedule.t_from_sigma(sigma), t, atol=1e-12)
    assert torch.all(sigma[1:] > sigma[:-1])
    # masking probability a t, and its inverse
    assert torch.allclose(schedule.mask_probability(t), -torch.expm1(-sigma), atol=1e-12)
    probability = torch.linspace(0, 0.99, 50, dtype=torch.float64)
    assert torch.allclose(
        schedule.mask_probability(schedule.t_from_mask_probability(probability)), probability
    )


def test_loglinear_rate_is_the_derivative_and_weight_is_one_over_t():
    schedule = build_noise_schedule("loglinear", sigma_max=10.0)
    t = torch.linspace(0.05, 0.95, 19, dtype=torch.float64)
    h = 1e-6
    numeric = (schedule.sigma(t + h) - schedule.sigma(t - h)) / (2 * h)
    assert torch.allclose(schedule.rate(t), numeric, rtol=1e-6)
    general = schedule.rate(t) / torch.expm1(schedule.sigma(t))
    assert torch.allclose(general, 1 / t, rtol=1e-9)
    assert torch.allclose(schedule.loss_weight(t), general, rtol=1e-9)


def test_unknown_schedule_and_bad_sigma_max_raise():
    with pytest.raises(ValueError, match="Unknown noise schedule"):
        build_noise_schedule("cosine")
    with pytest.raises(ValueError, match="sigma_max"):
        LogLinearNoiseSchedule(sigma_max=0.0)
    with pytest.raises(ValueError, match="noise_schedule"):
        MDLMConfig(noise_schedule="cosine")


def test_sample_times_stay_in_range_and_antithetic_times_cover_the_interval():
    t = sample_times(1000, eps=1e-3, generator=torch.Generator().manual_seed(0))
    assert float(t.min()) >= 1e-3 and float(t.max()) <= 1.0
    anti = sample_times(8, antithetic=True, eps=0.0, generator=torch.Generator().manual_seed(0))
    # one time in each eighth of [0, 1)
    assert sorted((anti * 8).floor().long().tolist()) == list(range(8))


# ---- model ------------------------------------------------------------------------------------------------------


def test_output_layer_starts_at_zero_and_adaln_at_identity():
    model = MDLMForMaskedDiffusionLM(MDLMConfig(**TINY))
    assert float(model.lm_head.weight.detach().abs().sum()) == 0.0
    ids = torch.tensor([[9, 10, MASK, MASK]])
    logits = model(input_ids=ids, noise_level=torch.tensor([3.0])).logits
    assert torch.all(logits == 0)
    no_zero = MDLMForMaskedDiffusionLM(MDLMConfig(**TINY, zero_init_output=False))
    assert float(no_zero.lm_head.weight.detach().abs().sum()) > 0
    # adaLN is the identity at the start (DiT): zero shifts, scales and gates, so the noise level changes nothing
    # until training moves them (transformers skips `_init_weights` for custom modules without own parameters;
    # this failed while the rule was keyed on the block)
    adaln = [
        *(layer.adaln_modulation for layer in no_zero.model.layers),
        no_zero.model.final_adaln_modulation,
    ]
    assert all(not m.weight.detach().any() and not m.bias.detach().any() for m in adaln)
    with torch.no_grad():
        low = no_zero(input_ids=ids, noise_level=torch.tensor([0.5])).logits
        high = no_zero(input_ids=ids, noise_level=torch.tensor([5.0])).logits
    assert torch.equal(low, high) and float(low.abs().sum()) > 0


def test_time_conditioning_changes_logits_and_can_be_switched_off():
    model = make_mdlm()
    ids = torch.tensor([[9, 10, MASK, MASK]])
    low = model(input_ids=ids, noise_level=torch.tensor([0.5])).logits
    high = model(input_ids=ids, noise_level=torch.tensor([5.0])).logits
    assert not torch.allclose(low, high)
    off = make_mdlm(time_conditioning=False)
    assert off.model.time_embedding is None
    assert torch.allclose(
        off(input_ids=ids, noise_level=torch.tensor([0.5])).logits,
        off(input_ids=ids, noise_level=torch.tensor([5.0])).logits,
    )


def test_missing_noise_level_is_estimated_from_the_masked_fraction():
    model = make_mdlm()
    ids = torch.tensor([[9, 10, MASK, MASK]])
    schedule = model.noise_schedule
    sigma = schedule.sigma(schedule.t_from_mask_probability(torch.tensor([0.5])))
    assert torch.allclose(
        model(input_ids=ids).logits, model(input_ids=ids, noise_level=sigma).logits, atol=1e-6
    )


# ---- ancestral sampler ------------------------------------------------------------------------------------------


class FixedLogits:
    """Replaces the model call by fixed per-token logits, to check the sampler's statistics."""

    def __init__(self, model, logits: torch.Tensor):
        self.model, self.logits, self.calls = model, logits, 0

    def __call__(self, input_ids, attention_mask, t):
        self.calls += 1
        return self.logits.expand(input_ids.shape[0], input_ids.shape[1], -1).clone()


def test_ancestral_step_unmasks_the_right_fraction_with_the_right_token_distribution():
    model = make_mdlm(time_conditioning=False)
    logits = torch.full((27,), -30.0)
    logits[10], logits[11] = math.log(0.9), math.log(0.1)
    model._denoising_logits = FixedLogits(model, logits)
    out = model.generate(
        max_new_tokens=200,
        num_return_sequences=20,
        num_steps=4,
        do_sample=True,
        top_k=2,
        seed=0,
        output_history=True,
        prompt_layout="none",
    )
    first = out.history[0].flatten()  # 4000 positions
    schedule = model.noise_schedule
    dt = (1 - 1e-5) / 4
    p_t, p_s = schedule.mask_probability(torch.tensor(1.0)), schedule.mask_probability(torch.tensor(1.0 - dt))
    expected_unmasked = float((p_t - p_s) / p_t)  # ~ 0.25
    unmasked = first.ne(MASK)
    assert abs(float(unmasked.float().mean()) - expected_unmasked) < 0.04
    # tokens follow p (0.9 / 0.1), not the probabilities-as-logits quirk (which gives ~0.5 / 0.5 for top_k=2)
    share_10 = float(first[unmasked].eq(10).float().mean())
    assert abs(share_10 - 0.9) < 0.04
    assert set(first[unmasked].tolist()) <= {10, 11}


def test_ancestral_last_step_fills_every_mask_with_the_argmax():
    model = make_mdlm(time_conditioning=False)
    logits = torch.full((27,), 0.0)
    logits[12] = 1.0  # the argmax, although far from certain
    model._denoising_logits = FixedLogits(model, logits)
    out = model.generate(input_ids=torch.tensor([[9]]), max_new_tokens=50, num_steps=1, seed=0)
    assert out.sequences[0, 2:].tolist() == [12] * 50


def test_ancestral_sampler_ends_without_masks_and_keeps_the_prompt():
    model = make_mdlm()
    ids = torch.tensor([[0, 9, MASK, 11], [12, 13, 14, 15]])
    out = model.generate(
        input_ids=ids, attention_mask=ids.ne(0).long(), max_new_tokens=9, num_steps=5, seed=3, do_sample=True
    )
    seqs = out.sequences
    assert not bool(seqs.eq(MASK).any())
    assert seqs[0, [0, 1, 3]].tolist() == [0, 9, 11] and seqs[1, :4].tolist() == [12, 13, 14, 15]
    assert seqs[:, 4].tolist() == [BOS, BOS]


@pytest.mark.parametrize("do_sample", [False, True])
def test_cache_trick_gives_the_same_samples_with_fewer_model_calls(do_sample):
    model = make_mdlm(time_conditioning=False)
    # more steps than tokens: many steps change nothing, and their logits can be reused
    kwargs = dict(
        input_ids=torch.tensor([[9, 10, 11]]),
        max_new_tokens=6,
        num_steps=40,
        do_sample=do_sample,
        output_history=True,
    )
    for seed in range(3):
        cached = model.generate(**kwargs, seed=seed, use_cache_trick=True)
        uncached = model.generate(**kwargs, seed=seed, use_cache_trick=False)
        assert torch.equal(cached.sequences, uncached.sequences)
        assert all(torch.equal(a, b) for a, b in zip(cached.history, uncached.history))
        assert int(uncached.model_calls[0]) == len(uncached.history)
        assert int(cached.model_calls[0]) < int(uncached.model_calls[0])
        # one evaluation per distinct state (plus the first): exactly the steps that changed the canvas
        states = [torch.cat([kwargs["input_ids"], torch.tensor([[BOS] + [MASK] * 6])], 1), *cached.history]
        changes = sum(int(not torch.equal(a, b)) for a, b in zip(states[:-2], states[1:-1]))
        assert int(cached.model_calls[0]) == 1 + changes


def test_cache_trick_in_a_batch_counts_calls_per_row():
    model = make_mdlm(time_conditioning=False)
    ids = torch.tensor([[9, 10, 11], [12, 13, 14]])
    cached = model.generate(input_ids=ids, max_new_tokens=5, num_steps=30, seed=0, use_cache_trick=True)
    uncached = model.generate(input_ids=ids, max_new_tokens=5, num_steps=30, seed=0, use_cache_trick=False)
    assert torch.equal(cached.sequences, uncached.sequences)
    assert bool((cached.model_calls < uncached.model_calls).all())
    assert cached.num_forward_passes < uncached.num_forward_passes


def test_cache_trick_is_not_used_when_the_model_sees_time():
    model = make_mdlm(time_conditioning=True)
    out = model.generate(
        input_ids=torch.tensor([[9, 10]]),
        max_new_tokens=4,
        num_steps=30,
        seed=0,
        use_cache_trick=True,
        output_history=True,
    )
    assert int(out.model_calls[0]) == len(out.history)


def test_ancestral_needs_steps_and_rejects_threshold():
    model = make_mdlm()
    with pytest.raises(ValueError, match="threshold applies to the 'unmask' sampler"):
        model.generate(input_ids=torch.tensor([[9]]), threshold=0.1)
