"""Sampling follows transformers' meaning: `do_sample`, `temperature`, `top_k`, `top_p`, `logits_processor`, and
`transformers.set_seed` (no private generator unless `seed=` or `generator=` is given). Tiny random models, with
the generation config an experiment writes into its export."""

import json

import pytest
import torch
from transformers import LogitsProcessor, LogitsProcessorList, set_seed
from xlm_hf.modeling.configuration_mdlm import MDLMConfig
from xlm_hf.modeling.configuration_mlm import MLMConfig
from xlm_hf.modeling.generation_mdlm import MDLMGenerationConfig
from xlm_hf.modeling.generation_mlm import MLMGenerationConfig
from xlm_hf.modeling.modeling_mdlm import MDLMForMaskedDiffusionLM
from xlm_hf.modeling.modeling_mlm import MLMForMaskedLM

from xlm_hf.experiment import load_experiment
from xlm_hf.ilm import ILMConfig, ILMModelForInsertionLM

MASK, BOS = 2, 4
TINY = dict(
    vocab_size=27,
    hidden_size=32,
    num_hidden_layers=2,
    num_attention_heads=2,
    intermediate_size=64,
    max_position_embeddings=48,
)
PROMPTS = torch.tensor([[9, 10, 11], [12, 13, 14], [15, 16, 17], [18, 19, 20]])
NEW_TOKENS = 8


def make_model(family: str, experiment: str | None = None):
    """A random, non-degenerate model; with `experiment`, its generation config is the one that experiment
    exports (its `generation:` section applied as `xlm-hf train` does)."""
    torch.manual_seed(0)
    if family == "mlm":
        model = MLMForMaskedLM(MLMConfig(**TINY))
    else:
        model = MDLMForMaskedDiffusionLM(MDLMConfig(**TINY, time_embedding_dim=16))
    with torch.no_grad():
        for param in model.parameters():
            param.add_(torch.randn_like(param) * 0.2)  # most likely tokens near 0.3: samples vary
    if experiment is not None:
        model.generation_config.update(**load_experiment(experiment)["generation"])
    return model.eval()


def greedy_reference(model, prompts: torch.Tensor, new_tokens: int) -> torch.Tensor:
    """Argmax decoding written out: each step commits the one masked position whose most likely token is the
    most probable (the leftmost on ties) with that token."""
    canvas = torch.cat(
        [prompts, torch.full((len(prompts), 1), BOS), torch.full((len(prompts), new_tokens), MASK)], 1
    )
    for _ in range(new_tokens):
        masked = canvas.eq(MASK)
        if isinstance(model, MDLMForMaskedDiffusionLM):
            schedule = model.noise_schedule
            fraction = masked.sum(-1).float() / new_tokens
            sigma = schedule.sigma(schedule.t_from_mask_probability(fraction).clamp(0.0, 1.0))
            logits = model(input_ids=canvas, noise_level=sigma).logits.float()
        else:
            logits = model(input_ids=canvas).logits.float()
        logits[..., MASK] = float("-inf")
        best_prob, best_token = logits.softmax(-1).max(-1)
        position = best_prob.masked_fill(~masked, -1.0).argmax(-1)
        rows = torch.arange(len(canvas))
        canvas[rows, position] = best_token[rows, position]
    return canvas


def unmask_options(family: str) -> dict:
    """One token per step, most confident first: greedy decoding is then fully deterministic."""
    options = dict(
        max_new_tokens=NEW_TOKENS, num_steps=NEW_TOKENS, unmasking_order="top_prob", threshold=None
    )
    return {**options, "sampler": "unmask"} if family == "mdlm" else options


@pytest.mark.parametrize(
    "family, experiment, sampler",
    [
        ("mlm", "star_easy_mlm", "unmask"),
        ("mdlm", "star_easy_mdlm", "ancestral"),
        ("mdlm", "star_easy_mdlm", "unmask"),
    ],
)
def test_set_seed_makes_samples_reproducible_and_another_seed_changes_them(family, experiment, sampler):
    model = make_model(family, experiment)
    assert model.generation_config.seed is None  # an export carries no private generator

    def sample(seed: int) -> torch.Tensor:
        set_seed(seed)
        return model.generate(
            input_ids=PROMPTS, max_new_tokens=NEW_TOKENS, num_steps=4, sampler=sampler, do_sample=True
        ).sequences

    first = sample(1)
    assert torch.equal(first, sample(1))
    # 32 sampled positions from a flat-ish random model: the same draw under another seed is implausible
    assert not torch.equal(first, sample(2))
    # an explicit private generator still wins over the global RNG
    set_seed(1)
    private = model.generate(
        input_ids=PROMPTS, num_steps=4, sampler=sampler, do_sample=True, seed=5
    ).sequences
    set_seed(2)
    assert torch.equal(
        private,
        model.generate(input_ids=PROMPTS, num_steps=4, sampler=sampler, do_sample=True, seed=5).sequences,
    )


@pytest.mark.parametrize("family, experiment", [("mlm", "star_easy_mlm"), ("mdlm", "star_easy_mdlm")])
def test_do_sample_false_is_argmax_decoding_whatever_the_seed_and_temperature(family, experiment):
    model = make_model(family, experiment)
    reference = greedy_reference(model, PROMPTS, NEW_TOKENS)
    for seed, extra in ((1, {}), (2, {"temperature": 0.3}), (3, {"do_sample": False, "temperature": 5.0})):
        set_seed(seed)
        out = model.generate(input_ids=PROMPTS, **unmask_options(family), **extra)
        assert torch.equal(out.sequences, reference), (seed, extra)


@pytest.mark.parametrize("family, experiment", [("mlm", "star_easy_mlm"), ("mdlm", "star_easy_mdlm")])
def test_top_k_one_sampling_is_greedy_and_wider_sampling_is_not(family, experiment):
    model = make_model(family, experiment)
    greedy = model.generate(input_ids=PROMPTS, **unmask_options(family)).sequences
    for seed in (1, 2):
        set_seed(seed)
        sampled = model.generate(input_ids=PROMPTS, **unmask_options(family), do_sample=True, top_k=1)
        assert torch.equal(sampled.sequences, greedy)
    set_seed(1)
    # the export's own temperature: do_sample=True alone must sample
    wider = model.generate(input_ids=PROMPTS, **unmask_options(family), do_sample=True, top_k=5)
    assert not torch.equal(wider.sequences, greedy)


class BanToken(LogitsProcessor):
    """Bans one token and records the shapes it was called with."""

    def __init__(self, token: int):
        self.token, self.shapes = token, []

    def __call__(self, input_ids: torch.LongTensor, scores: torch.Tensor) -> torch.Tensor:
        self.shapes.append((tuple(input_ids.shape), tuple(scores.shape)))
        scores = scores.clone()
        scores[:, self.token] = float("-inf")
        return scores


@pytest.mark.parametrize(
    "family, options",
    [
        ("mlm", dict(do_sample=False)),
        ("mlm", dict(do_sample=True, temperature=1.5)),
        ("mdlm", dict(do_sample=False, sampler="ancestral", num_steps=4)),
        ("mdlm", dict(do_sample=True, sampler="unmask", top_p=0.9)),
    ],
)
def test_a_caller_logits_processor_is_applied(family, options):
    model = make_model(family)
    kwargs = dict(input_ids=PROMPTS, max_new_tokens=NEW_TOKENS, **options)
    set_seed(0)
    plain = model.generate(**kwargs).sequences[:, -NEW_TOKENS:]
    banned = int(plain.flatten().mode().values)  # the token the model likes most here
    ban = BanToken(banned)
    processors = LogitsProcessorList([ban])
    set_seed(0)
    out = model.generate(**kwargs, logits_processor=processors).sequences[:, -NEW_TOKENS:]
    assert banned not in out.tolist()
    assert list(processors) == [ban]  # the caller's list is not extended with the warpers
    # called on the (positions, vocab) batch of each step, with each position's canvas row as input_ids
    width = PROMPTS.shape[1] + 1 + NEW_TOKENS
    n_masks = len(PROMPTS) * NEW_TOKENS
    if options.get("sampler") == "ancestral":
        # the positions being decided are those that unmask in the step: each mask is processed exactly once
        assert all(ids[1:] == (width,) and scores[1:] == (TINY["vocab_size"],) for ids, scores in ban.shapes)
        assert all(ids[0] == scores[0] > 0 for ids, scores in ban.shapes)
        assert sum(scores[0] for _, scores in ban.shapes) == n_masks
        assert ban.shapes[0][1][0] < n_masks
    else:
        # the unmask sampler ranks every masked position by its processed logits, so all of them are processed
        assert ban.shapes[0] == ((n_masks, width), (n_masks, TINY["vocab_size"]))


@pytest.mark.parametrize(
    "family, model_class, config_class, generation_class, sampler",
    [
        ("mlm", MLMForMaskedLM, MLMConfig, MLMGenerationConfig, "unmask"),
        ("mdlm", MDLMForMaskedDiffusionLM, MDLMConfig, MDLMGenerationConfig, "ancestral"),
    ],
)
def test_a_folder_saved_with_temperature_zero_and_seed_zero_loads_and_decodes_greedily(
    tmp_path, family, model_class, config_class, generation_class, sampler
):
    make_model(family).save_pretrained(tmp_path)
    # what exports wrote before do_sample existed
    legacy = {
        "sampler": sampler,
        "num_steps": NEW_TOKENS,
        "temperature": 0.0,
        "seed": 0,
        "unmasking_order": "top_prob",
    }
    (tmp_path / "generation_config.json").write_text(json.dumps({**legacy, "transformers_version": "5.24.0"}))
    model = model_class.from_pretrained(tmp_path).eval()
    config = model.generation_config
    assert type(config) is generation_class and config.temperature == 0.0 and config.do_sample is None
    if sampler == "unmask":
        # greedy tokens, most confident first: exactly argmax decoding
        out = model.generate(input_ids=PROMPTS, max_new_tokens=NEW_TOKENS)
        assert torch.equal(out.sequences, greedy_reference(model, PROMPTS, NEW_TOKENS))
    else:
        # greedy tokens; which positions unmask is drawn from the saved seed's generator, as it was
        out = model.generate(input_ids=PROMPTS, max_new_tokens=NEW_TOKENS)
        again = model.generate(input_ids=PROMPTS, max_new_tokens=NEW_TOKENS, do_sample=False, seed=0)
        assert torch.equal(out.sequences, again.sequences) and not bool(out.sequences.eq(MASK).any())
    # sampling needs a positive temperature, as in transformers; the error says what to do
    with pytest.raises(ValueError, match="temperature=0 cannot be combined with do_sample=True"):
        model.generate(input_ids=PROMPTS, max_new_tokens=NEW_TOKENS, do_sample=True)
    sampled = model.generate(input_ids=PROMPTS, max_new_tokens=NEW_TOKENS, do_sample=True, temperature=1.0)
    assert not bool(sampled.sequences.eq(MASK).any())


@pytest.mark.parametrize("name", ["star_easy_mlm", "star_easy_mdlm", "star_medium_mlm", "star_hard_mdlm"])
def test_experiments_export_greedy_decoding_without_a_private_seed(name):
    generation = load_experiment(name)["generation"]
    assert generation.get("do_sample") is False
    assert "seed" not in generation and generation.get("temperature", 1.0) > 0


def test_ilm_sampling_follows_set_seed_too():
    torch.manual_seed(0)
    config = ILMConfig(
        vocab_size=27, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, max_position_embeddings=40
    )
    model = ILMModelForInsertionLM(config).eval()
    options = dict(
        num_return_sequences=4,
        max_new_tokens=6,
        stopping_threshold=1.0,
        do_sample=True,
        position_do_sample=True,
    )

    def sample(seed: int) -> torch.Tensor:
        set_seed(seed)
        return model.generate(**options).sequences

    first = sample(1)
    assert torch.equal(first, sample(1)) and not torch.equal(first, sample(2))
