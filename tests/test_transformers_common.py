"""transformers' own common model tests (`ModelTesterMixin`, `ConfigTester`, `PipelineTesterMixin`) on every family.

The test sources come from the transformers sdist that matches the installed version (see `transformers_sdist.py`);
the testers below are written like transformers' `tests/models/*/test_modeling_*.py`, with tiny configs and
left-padded inputs in each family's layout. A tiny `LlamaForCausalLM` runs through the same harness as a control:
what fails for a family but passes for Llama is the family's fault, not the harness's.

Skips: the sdist's own (`@require_torch_accelerator`, `@slow`, a package that is not installed, the pipeline tests
that load tiny models from the Hub) and those listed in `docs/architecture.md` ("Not offered"), each with its reason.
"""

import unittest

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM, LlamaModel
from transformers.testing_utils import torch_device
from transformers_sdist import load_common_tests
from xlm_hf.modeling.configuration_arlm import ARLMConfig
from xlm_hf.modeling.configuration_ilm import ILMConfig
from xlm_hf.modeling.configuration_mdlm import MDLMConfig
from xlm_hf.modeling.configuration_mlm import MLMConfig
from xlm_hf.modeling.modeling_arlm import ARLMForCausalLM
from xlm_hf.modeling.modeling_ilm import ILMModelForInsertionLM
from xlm_hf.modeling.modeling_mdlm import MDLMForMaskedDiffusionLM
from xlm_hf.modeling.modeling_mlm import MLMForMaskedLM

from xlm_hf.families import available_families

try:
    modeling_common, configuration_common, pipeline_mixin = load_common_tests()
except RuntimeError as error:  # no PyPI and no XLM_HF_TRANSFORMERS_TESTS: fail loudly, never skip
    pytest.fail(str(error), pytrace=False)

available_families()  # registers every family with the auto classes, as the project does

ModelTesterMixin = modeling_common.ModelTesterMixin
ConfigTester = configuration_common.ConfigTester
PipelineTesterMixin = pipeline_mixin.PipelineTesterMixin
GenerationTesterMixin = modeling_common.GenerationTesterMixin  # the stand-in; see transformers_sdist.py
ids_tensor = modeling_common.ids_tensor

NUM_SPECIAL = 7  # [PAD]=0 [CLS]=1 [MASK]=2 [EOS]=3 [BOS]=4 [SEP]=5 and one spare, as in the number tokenizer
PAD, CLS, MASK, BOS = 0, 1, 2, 4


class XLMModelTester:
    """Tiny config and inputs for one family; subclasses set the classes and lay out the inputs.

    Row `b` of every batch is left-padded by `b % 3` tokens, so each test runs on padded inputs as generation and
    evaluation give them. Every input lives on `torch_device` (the GPU where there is one), where the mixin puts
    the models.
    """

    config_class = None
    config_overrides: dict = {}

    def __init__(
        self,
        parent,
        batch_size=3,
        seq_length=9,
        is_training=True,
        vocab_size=27,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=37,
        max_position_embeddings=64,
    ):
        self.parent = parent
        self.batch_size = batch_size
        self.seq_length = seq_length
        self.is_training = is_training
        self.vocab_size = vocab_size
        self.hidden_size = hidden_size
        self.num_hidden_layers = num_hidden_layers
        self.num_attention_heads = num_attention_heads
        self.intermediate_size = intermediate_size
        self.max_position_embeddings = max_position_embeddings

    def get_config(self):
        return self.config_class(
            vocab_size=self.vocab_size,
            hidden_size=self.hidden_size,
            num_hidden_layers=self.num_hidden_layers,
            num_attention_heads=self.num_attention_heads,
            intermediate_size=self.intermediate_size,
            max_position_embeddings=self.max_position_embeddings,
            initializer_range=0.02,
            **self.config_overrides,
        )

    def real_tokens(self, length: int) -> list[int]:
        """One row's real tokens in the family's layout (`length` of them)."""
        return ids_tensor([length], self.vocab_size - NUM_SPECIAL).add(NUM_SPECIAL).tolist()

    def prepare_config_and_inputs(self):
        input_ids = torch.full((self.batch_size, self.seq_length), PAD, dtype=torch.long, device=torch_device)
        attention_mask = torch.zeros_like(input_ids)
        for row in range(self.batch_size):
            padding = row % 3
            input_ids[row, padding:] = torch.tensor(
                self.real_tokens(self.seq_length - padding), device=torch_device
            )
            attention_mask[row, padding:] = 1
        return self.get_config(), input_ids, attention_mask

    def extra_inputs(self) -> dict:
        return {}

    def prepare_labels(self, inputs: dict) -> dict:
        """The loss inputs for the training tests: the family's own, which transformers' mixin cannot know."""
        return {}

    def prepare_config_and_inputs_for_common(self):
        config, input_ids, attention_mask = self.prepare_config_and_inputs()
        return config, {"input_ids": input_ids, "attention_mask": attention_mask, **self.extra_inputs()}


class ARLMModelTester(XLMModelTester):
    config_class = ARLMConfig

    def real_tokens(self, length):
        tokens = super().real_tokens(length)  # prompt [BOS] target
        tokens[length // 2] = BOS
        return tokens

    def prepare_labels(self, inputs):
        return {"labels": inputs["input_ids"].masked_fill(inputs["attention_mask"].eq(0), -100)}


class MLMModelTester(XLMModelTester):
    config_class = MLMConfig

    def real_tokens(self, length):
        tokens = super().real_tokens(length)  # prompt [BOS] target, part of the target masked
        tokens[length // 2] = BOS
        for column in range(length // 2 + 1, length, 2):
            tokens[column] = MASK
        return tokens

    def prepare_labels(self, inputs):
        # deterministic, so that two calls (e.g. tuple and dict outputs compared) get the same labels
        columns = torch.arange(self.seq_length, device=torch_device).expand_as(inputs["input_ids"])
        clean = columns % (self.vocab_size - NUM_SPECIAL) + NUM_SPECIAL
        return {"labels": clean.masked_fill(inputs["input_ids"].ne(MASK), -100)}


class MDLMModelTester(MLMModelTester):
    config_class = MDLMConfig
    # a non-zero output layer, so that outputs and their comparisons are not trivially zero
    config_overrides = {"zero_init_output": False, "time_embedding_dim": 16}

    def extra_inputs(self):
        return {"noise_level": torch.linspace(0.5, 3.0, self.batch_size, device=torch_device)}


class MDLMWithNeighborWindowModelTester(MDLMModelTester):
    config_overrides = {**MDLMModelTester.config_overrides, "neighbor_token_window": 2}


class ILMModelTester(XLMModelTester):
    config_class = ILMConfig

    def real_tokens(self, length):
        return [CLS, BOS, *super().real_tokens(length - 2)]  # [CLS] [BOS] text

    def prepare_labels(self, inputs):
        # one deleted token in the gap after the last column of each row (none in the last row: "stop")
        target_positions = torch.full((self.batch_size, 1), self.seq_length - 1, device=torch_device)
        target_tokens = torch.arange(self.batch_size, device=torch_device)[:, None] + NUM_SPECIAL
        target_positions[-1], target_tokens[-1] = -100, -100
        return {
            "target_positions": target_positions,
            "target_tokens": target_tokens,
            "labels": target_tokens.ne(-100).sum(-1),
        }


class LlamaModelTester(XLMModelTester):
    """The control: transformers' own causal LM through the same harness and the same left-padded inputs."""

    config_class = LlamaConfig

    def get_config(self):
        return LlamaConfig(
            vocab_size=self.vocab_size,
            hidden_size=self.hidden_size,
            num_hidden_layers=self.num_hidden_layers,
            num_attention_heads=self.num_attention_heads,
            num_key_value_heads=self.num_attention_heads,
            intermediate_size=self.intermediate_size,
            max_position_embeddings=self.max_position_embeddings,
            pad_token_id=PAD,
            bos_token_id=BOS,
            eos_token_id=3,
        )


class XLMCommonTests(ModelTesterMixin, PipelineTesterMixin):
    """What every family's test case shares: the tester, the config tests, and the skips of features listed as not
    offered in docs/architecture.md."""

    model_tester_class = XLMModelTester
    pipeline_model_mapping: dict = {}

    def setUp(self):
        self.model_tester = self.model_tester_class(self)
        self.config_tester = ConfigTester(
            self, config_class=self.model_tester.config_class, hidden_size=48, num_attention_heads=4
        )

    def _prepare_for_class(self, inputs_dict, model_class, return_labels=False):
        inputs = super()._prepare_for_class(inputs_dict, model_class, return_labels=return_labels)
        if return_labels and "labels" not in inputs:
            inputs.update(self.model_tester.prepare_labels(inputs))
        return inputs

    def test_config(self):
        self.config_tester.run_common_tests()


class LlamaControlTest(XLMCommonTests, GenerationTesterMixin, unittest.TestCase):
    model_tester_class = LlamaModelTester
    all_model_classes = (LlamaModel, LlamaForCausalLM)  # as transformers' own LlamaModelTest
    pipeline_model_mapping = {"text-generation": LlamaForCausalLM}


class ARLMModelTest(XLMCommonTests, GenerationTesterMixin, unittest.TestCase):
    model_tester_class = ARLMModelTester
    all_model_classes = (ARLMForCausalLM,)
    pipeline_model_mapping = {"text-generation": ARLMForCausalLM}


class MLMModelTest(XLMCommonTests, unittest.TestCase):
    model_tester_class = MLMModelTester
    all_model_classes = (MLMForMaskedLM,)
    # Its `generate` is the family's own unmasking sampler, not transformers' GenerationMixin, whose tests do not
    # apply; tests/test_masked_generation.py tests it.
    all_generative_model_classes = ()
    pipeline_model_mapping = {"fill-mask": MLMForMaskedLM}


class MDLMModelTest(XLMCommonTests, unittest.TestCase):
    model_tester_class = MDLMModelTester
    all_model_classes = (MDLMForMaskedDiffusionLM,)
    all_generative_model_classes = ()  # own sampler (tests/test_mdlm_sampler.py), as for the MLM
    pipeline_model_mapping = {"fill-mask": MDLMForMaskedDiffusionLM}


class MDLMWithNeighborWindowModelTest(MDLMModelTest):
    """The same common tests with the backbone's neighbour embeddings on (new parameters, a new input path)."""

    model_tester_class = MDLMWithNeighborWindowModelTester


class ILMModelTest(XLMCommonTests, unittest.TestCase):
    model_tester_class = ILMModelTester
    all_model_classes = (ILMModelForInsertionLM,)
    all_generative_model_classes = ()  # own insertion sampler (tests/test_ilm_generation.py)
