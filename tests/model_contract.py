"""The common model contract every family passes (in the spirit of transformers' `ModelTesterMixin`).

A family's test module subclasses `ModelContract` and sets `family` and, where its model needs more than
`input_ids`/`attention_mask`, overrides `extra_inputs` (e.g. MDLM's noise level) or `output_tensor`:

    class TestARLMContract(ModelContract):
        family = "arlm"

The other contracts (`collator_contract.py`, `trainer_contract.py`, `generation_contract.py`) build their tiny
models through the same `TinyFamily` base, so one `config_overrides` describes a family's test model everywhere.
"""

import copy
import functools
import json

import pytest
import torch
from isolation import run_without_xlm_hf
from safetensors.torch import save_file

from xlm_hf.export import export_model
from xlm_hf.families import get_family
from xlm_hf.tokenization import build_number_tokenizer

VOCAB_NUMBERS = 20  # 27 ids with the 7 special tokens


@functools.cache
def _number_tokenizer():
    return build_number_tokenizer(VOCAB_NUMBERS)  # read-only in the contracts: one for the whole session


class TinyFamily:
    """A family's tiny test model: what every contract builds on. Subclasses set `family` and, where the
    defaults make a degenerate model (e.g. a zero-initialised output layer), `config_overrides`."""

    family: str = ""
    config_overrides: dict = {}

    def make_config(self, **overrides):
        options = dict(
            vocab_size=7 + VOCAB_NUMBERS,
            hidden_size=32,
            num_hidden_layers=2,
            num_attention_heads=2,
            intermediate_size=64,
            max_position_embeddings=32,
            attention_dropout=0.0,
            hidden_dropout=0.0,
        )
        options.update(self.config_overrides)
        options.update(overrides)
        return get_family(self.family).config_class(**options)

    def make_model(self, **overrides):
        torch.manual_seed(0)
        model = get_family(self.family).model_class(self.make_config(**overrides))
        return model.eval()

    def make_tokenizer(self):
        return _number_tokenizer()


class ModelContract(TinyFamily):
    batch_size = 3
    length = 10

    # ----- what a family may override ---------------------------------------------------------------------

    def extra_inputs(self, input_ids: torch.Tensor) -> dict:
        """Inputs beyond ids and mask (e.g. a noise level), one row per row of `input_ids`."""
        return {}

    def output_tensor(self, outputs) -> torch.Tensor:
        return outputs.logits

    def make_inputs(self, batch_size: int | None = None, length: int | None = None, seed: int = 0) -> dict:
        generator = torch.Generator().manual_seed(seed)
        batch_size, length = batch_size or self.batch_size, length or self.length
        input_ids = torch.randint(7, 7 + VOCAB_NUMBERS, (batch_size, length), generator=generator)
        attention_mask = torch.ones_like(input_ids)
        return {"input_ids": input_ids, "attention_mask": attention_mask, **self.extra_inputs(input_ids)}

    def forward(self, model, inputs: dict) -> torch.Tensor:
        return self.output_tensor(model(**inputs))

    # ----- the contract -------------------------------------------------------------------------------------

    def test_output_shape(self):
        model = self.make_model()
        output = self.forward(model, self.make_inputs())
        assert output.shape[:2] == (self.batch_size, self.length)
        assert output.shape[-1] == model.config.vocab_size
        assert torch.isfinite(output).all()

    def test_save_and_load_give_identical_outputs(self, tmp_path):
        model = self.make_model()
        inputs = self.make_inputs()
        model.save_pretrained(tmp_path)
        assert (tmp_path / "model.safetensors").is_file()
        reloaded = type(model).from_pretrained(tmp_path).eval()
        torch.testing.assert_close(
            self.forward(model, inputs), self.forward(reloaded, inputs), rtol=0, atol=0
        )

    def test_exported_folder_loads_without_xlm_hf(self, tmp_path):
        model = self.make_model()
        tokenizer = build_number_tokenizer(VOCAB_NUMBERS)
        export_dir = tmp_path / "export"
        export_model(model, tokenizer, export_dir, self.family)
        inputs = self.make_inputs()
        with torch.no_grad():
            expected = self.forward(model, inputs)
        save_file(
            {**{k: v.contiguous() for k, v in inputs.items()}, "expected": expected.contiguous()},
            tmp_path / "io.safetensors",
        )
        result = run_without_xlm_hf(
            f"""
            import torch
            from safetensors.torch import load_file
            from transformers import AutoModel, AutoTokenizer
            model = AutoModel.from_pretrained({str(export_dir)!r}, trust_remote_code=True).eval()
            AutoTokenizer.from_pretrained({str(export_dir)!r}, trust_remote_code=True)
            tensors = load_file({str(tmp_path / "io.safetensors")!r})
            expected = tensors.pop("expected")
            with torch.no_grad():
                outputs = model(**tensors)
            logits = outputs.logits
            print("CLASS", type(model).__name__, type(model).__module__)
            print("MAXDIFF", float((logits - expected).abs().max()))
            """,
            cwd=str(tmp_path),
        )
        assert "transformers_modules" in result.stdout  # the copied code, not the installed package
        max_diff = float(result.stdout.split("MAXDIFF")[1].split()[0])
        assert max_diff < 1e-5
        config = json.loads((export_dir / "config.json").read_text())
        assert config["model_type"] == model.config.model_type
        assert set(get_family(self.family).auto_map) <= set(config["auto_map"])

    def test_batch_invariance(self):
        model = self.make_model()
        inputs = self.make_inputs()
        with torch.no_grad():
            batched = self.forward(model, inputs)
            for row in range(self.batch_size):
                single = self.forward(model, {k: v[row : row + 1] for k, v in inputs.items()})
                torch.testing.assert_close(batched[row : row + 1], single, rtol=1e-4, atol=1e-5)

    def test_left_padding_invariance(self):
        model = self.make_model()
        inputs = self.make_inputs(batch_size=1)
        padding = 4
        padded = copy.deepcopy(inputs)
        pad_id = model.config.pad_token_id
        padded["input_ids"] = torch.cat([torch.full((1, padding), pad_id), inputs["input_ids"]], dim=1)
        padded["attention_mask"] = torch.cat(
            [torch.zeros(1, padding, dtype=torch.long), inputs["attention_mask"]], dim=1
        )
        with torch.no_grad():
            plain = self.forward(model, inputs)
            shifted = self.forward(model, padded)[:, padding:]
        torch.testing.assert_close(plain, shifted, rtol=1e-4, atol=1e-5)

    def test_gradient_checkpointing_gives_same_loss_and_gradients(self):
        inputs = self.make_inputs()
        results = []
        for checkpointing in (False, True):
            model = self.make_model().train()
            if checkpointing:
                model.activation_checkpointing_enable(
                    activation_checkpointing_kwargs={"use_reentrant": False}
                )
                assert model.is_activation_checkpointing
            loss = self.forward(model, inputs).float().logsumexp(-1).mean()
            loss.backward()
            results.append(
                (
                    loss.detach(),
                    {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None},
                )
            )
        (loss_a, grads_a), (loss_b, grads_b) = results
        torch.testing.assert_close(loss_a, loss_b)
        assert grads_a.keys() == grads_b.keys()
        for name in grads_a:
            torch.testing.assert_close(grads_a[name], grads_b[name], rtol=1e-4, atol=1e-6, msg=name)

    def test_backward_reaches_every_trainable_parameter(self):
        model = self.make_model().train()
        loss = self.forward(model, self.make_inputs()).float().logsumexp(-1).mean()
        loss = loss + self.auxiliary_loss(model, self.make_inputs())
        loss.backward()
        unreached = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
        assert not unreached, f"no gradient reaches {unreached}"

    def auxiliary_loss(self, model, inputs) -> torch.Tensor:
        """Loss on outputs besides `output_tensor` (e.g. a stopping head), so backward reaches those heads."""
        return torch.zeros(())

    def test_sdpa_and_eager_agree(self):
        inputs = self.make_inputs()
        inputs["attention_mask"][0, :3] = 0  # with padding, so the masks matter
        outputs = []
        for implementation in ("sdpa", "eager"):
            model = self.make_model()
            model.set_attn_implementation(implementation)
            assert model.config._attn_implementation == implementation
            with torch.no_grad():
                outputs.append(self.forward(model, inputs))
        real = inputs["attention_mask"].bool()
        torch.testing.assert_close(outputs[0][real], outputs[1][real], rtol=1e-4, atol=1e-5)

    def test_token_outside_vocabulary_is_one_clear_error(self):
        model = self.make_model()
        inputs = self.make_inputs()
        inputs["input_ids"][0, 0] = model.config.vocab_size + 5
        with pytest.raises(ValueError, match="outside the model's vocabulary"):
            self.forward(model, inputs)

    def test_sequence_longer_than_the_model_is_one_clear_error(self):
        model = self.make_model(max_position_embeddings=8)
        with pytest.raises(ValueError, match="max_position_embeddings"):
            self.forward(model, self.make_inputs(length=12))
