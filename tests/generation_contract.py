"""The generation contract every family passes: greedy generation is deterministic, the same for a prompt alone,
in a batch and behind left padding, respects `max_new_tokens`, and (where the family has them) returns a history
that leads to the final sequences and infills without touching the given tokens.

A family's generation test module subclasses `GenerationContract`, sets `family`, the options that make its
`generate` greedy, and what it supports:

    class TestMLMGenerationContract(GenerationContract):
        family = "mlm"
        generation_options = {"num_steps": 6, "do_sample": False, "suppress_tokens": SPECIAL_IDS}
        history_options = {"output_history": True}
        supports_infilling = True

and overrides `replay_history` to say how its history leads to the final sequences.
"""

import pytest
import torch
from model_contract import TinyFamily

SPECIAL_IDS = list(range(7))  # [PAD] [CLS] [MASK] [EOS] [BOS] [SEP] [UNK] of the number tokenizer


def is_subsequence(needle: list[int], haystack: list[int]) -> bool:
    it = iter(haystack)
    return all(any(x == y for y in it) for x in needle)


class GenerationContract(TinyFamily):
    # Options that make `generate` greedy and its lengths fixed (special tokens suppressed, no early stop).
    generation_options: dict = {}
    # The options that ask for a history (None: the family returns none).
    history_options: dict | None = None
    # Whether a prompt with [MASK]s is infilled, and the options to infill it with.
    supports_infilling: bool = False
    infill_options: dict = {}
    # Tokens `generate` adds around a plain prompt (e.g. `prompt [BOS]`: 1; `[CLS] prompt [BOS]`: 2).
    layout_tokens: int = 1
    max_new_tokens: int = 5
    prompts = ["3 4 5 6 7", "8 9", "10 11 12"]
    # Double precision, so that a batch's other rows (a different matmul shape) cannot flip a near-tie.
    dtype = torch.float64
    weight_noise = 0.5

    # ----- what a family may override ---------------------------------------------------------------------

    def make_generation_model(self):
        """A random, non-degenerate model: zero-initialised output layers and adaLN would make the logits flat
        and every greedy choice a tie."""
        model = self.make_model()
        generator = torch.Generator().manual_seed(1)
        with torch.no_grad():
            for param in model.parameters():
                param.add_(torch.randn(param.shape, generator=generator) * self.weight_noise)
        return model.to(self.dtype).eval()

    def generate(self, model, inputs: dict, **options):
        options = {"max_new_tokens": self.max_new_tokens, **self.generation_options, **options}
        with torch.no_grad():
            return model.generate(**inputs, return_dict_in_generate=True, **options)

    def replay_history(self, output, row: int) -> list[int]:
        """The real tokens of row `row` that `output`'s history leads to (they must be the final ones)."""
        raise NotImplementedError(f"{type(self).__name__} sets history_options but not replay_history.")

    # ----- helpers ------------------------------------------------------------------------------------------

    def encode(self, prompts: list[str]) -> dict:
        return dict(self.make_tokenizer()(prompts, return_tensors="pt", padding=True))

    def real_tokens(self, sequences: torch.Tensor, row: int) -> list[int]:
        pad = self.make_tokenizer().pad_token_id
        return [token for token in sequences[row].tolist() if token != pad]

    # ----- the contract -------------------------------------------------------------------------------------

    def test_greedy_generation_is_deterministic(self):
        model = self.make_generation_model()
        inputs = self.encode(self.prompts)
        torch.manual_seed(1)
        first = self.generate(model, inputs).sequences
        torch.manual_seed(2)  # greedy decoding draws nothing from torch's global generator
        assert torch.equal(first, self.generate(model, inputs).sequences)

    def test_a_prompt_generates_the_same_alone_and_in_a_batch(self):
        model = self.make_generation_model()
        batched = self.generate(model, self.encode(self.prompts)).sequences
        for row, prompt in enumerate(self.prompts):
            alone = self.generate(model, self.encode([prompt])).sequences
            assert self.real_tokens(alone, 0) == self.real_tokens(batched, row), prompt

    def test_left_padding_changes_nothing(self):
        model = self.make_generation_model()
        inputs = self.encode(self.prompts[:1])
        padding = 3
        padded = {
            "input_ids": torch.cat(
                [torch.full((1, padding), self.make_tokenizer().pad_token_id), inputs["input_ids"]], dim=1
            ),
            "attention_mask": torch.cat(
                [torch.zeros(1, padding, dtype=torch.long), inputs["attention_mask"]], dim=1
            ),
        }
        plain = self.generate(model, inputs).sequences
        shifted = self.generate(model, padded).sequences
        assert self.real_tokens(plain, 0) == self.real_tokens(shifted, 0)

    def test_max_new_tokens_is_respected(self):
        model = self.make_generation_model()
        inputs = self.encode(self.prompts)
        for max_new_tokens in (1, 4):
            sequences = self.generate(model, inputs, max_new_tokens=max_new_tokens).sequences
            for row in range(len(self.prompts)):
                prompt = int(inputs["attention_mask"][row].sum())
                new = len(self.real_tokens(sequences, row)) - prompt - self.layout_tokens
                assert new == max_new_tokens, (max_new_tokens, self.prompts[row])

    def test_history_leads_to_the_final_sequences(self):
        if self.history_options is None:
            pytest.skip(f"{self.family} returns no history")
        model = self.make_generation_model()
        inputs = self.encode(self.prompts)
        with_history = self.generate(model, inputs, **self.history_options)
        assert torch.equal(with_history.sequences, self.generate(model, inputs).sequences), (
            "asking for the history changes the result"
        )
        for row in range(len(self.prompts)):
            assert self.replay_history(with_history, row) == self.real_tokens(with_history.sequences, row)

    def test_infilling_keeps_the_given_tokens(self):
        if not self.supports_infilling:
            pytest.skip(f"{self.family} does not infill")
        tokenizer = self.make_tokenizer()
        model = self.make_generation_model()
        inputs = self.encode(["3 [MASK] 5 [MASK] [MASK] 8", "9 10 [MASK] 11"])
        sequences = self.generate(model, inputs, **self.infill_options).sequences
        assert not bool(sequences.eq(tokenizer.mask_token_id).any()), "every [MASK] is filled"
        for row in range(sequences.shape[0]):
            given = [t for t in self.real_tokens(inputs["input_ids"], row) if t != tokenizer.mask_token_id]
            assert is_subsequence(given, self.real_tokens(sequences, row))
