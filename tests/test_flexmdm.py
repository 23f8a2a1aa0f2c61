"""The flexmdm family against every shared contract (model, collators, Trainer, generation), then what makes it
itself: its schedules, its collators' layouts, the noise and the loss on hand-checked cases, gaps that grow during
generation, the history, and an exported folder that generates and runs the text-generation and infill pipelines
without xlm_hf.
"""

import json
import math

import pytest
import torch
from collator_contract import CollatorContract, FamilyBatches
from generation_contract import SPECIAL_IDS, GenerationContract
from isolation import run_without_xlm_hf
from model_contract import ModelContract, TinyFamily
from trainer_contract import TrainerContract
from xlm_hf.modeling.generation_flexmdm import largest_remainder
from xlm_hf.modeling.modeling_flexmdm import flexmdm_loss, flexmdm_noise
from xlm_hf.modeling.schedules_flexmdm import build_schedule

from xlm_hf.export import export_model
from xlm_hf.flexmdm.trainer_flexmdm import flexmdm_predictions

# Number tokenizer ids: [PAD] 0, [CLS] 1, [MASK] 2, [EOS] 3, [BOS] 4, [SEP] 5, [UNK] 6, numbers from 7.
PAD, MASK, EOS, BOS = 0, 2, 3, 4


class TestFlexMDMContract(ModelContract):
    family = "flexmdm"

    def auxiliary_loss(self, model, inputs):
        return model(**inputs).gap_lengths.sum()


class TestFlexMDMDistributionHeadContract(TestFlexMDMContract):
    config_overrides = {"gap_head": "distribution", "time_conditioning": False}


class TestFlexMDMWithNeighborWindowContract(TestFlexMDMContract):
    """With neighbours' embeddings (the masked star recipes' option): left padding, batch invariance, gradient
    checkpointing, the attention kernels and every parameter trained must still hold."""

    config_overrides = {"neighbor_token_window": 1}
    # same exported files as TestFlexMDMContract; the isolated subprocess is the slow part
    test_exported_folder_loads_without_xlm_hf = None


class TestFlexMDMCollatorContract(CollatorContract):
    family = "flexmdm"
    # `prompt [BOS] target [EOS]` from column 0: the row is right-padded as a whole
    padding_sides = {"lm": "right", "seq2seq": "right", "seq2seq_pred": "left"}


class TestFlexMDMTrainerContract(TrainerContract):
    family = "flexmdm"


class TestFlexMDMGenerationContract(GenerationContract):
    family = "flexmdm"
    generation_options = {"num_steps": 4, "do_sample": False, "suppress_tokens": SPECIAL_IDS}
    history_options = {"output_history": True}
    supports_infilling = True
    layout_tokens = 2  # prompt [BOS] ... [EOS]

    def generate(self, model, inputs, **options):
        # The model chooses the length; `min_new_tokens` = `max_new_tokens` fixes it for the contract.
        limit = options.get("max_new_tokens", self.max_new_tokens)
        return super().generate(model, inputs, min_new_tokens=limit, **options)

    def replay_history(self, output, row):
        return self.real_tokens(output.history[-1], row)  # the canvas after the last call


# ----- schedules ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["linear", "polynomial", "cosine", "sine"])
def test_schedules_are_cdfs_with_their_inverse_and_rate(name):
    schedule = build_schedule(name)
    t = torch.linspace(0.05, 0.95, 19, dtype=torch.float64)
    torch.testing.assert_close(
        schedule.alpha(torch.tensor([0.0, 1.0], dtype=torch.float64)),
        torch.tensor([0.0, 1.0], dtype=torch.float64),
    )
    torch.testing.assert_close(schedule.inverse(schedule.alpha(t)), t)
    numeric = (schedule.alpha(t + 1e-6) - schedule.alpha(t - 1e-6)) / 2e-6
    torch.testing.assert_close(schedule.rate(t), numeric / (1 - schedule.alpha(t)), rtol=1e-5, atol=1e-6)
    start = torch.full((1000,), 0.6, dtype=torch.float64)
    times = schedule.sample_truncated(torch.rand(1000, dtype=torch.float64), start)
    assert bool((times >= 0.6 - 1e-12).all()) and bool((times <= 1).all())
    torch.testing.assert_close(schedule.step_probability(t, torch.ones_like(t)), torch.ones_like(t))


def test_linear_schedule_rate_is_one_over_one_minus_t():
    schedule = build_schedule("linear")
    t = torch.tensor([0.0, 0.5, 0.75])
    torch.testing.assert_close(schedule.rate(t), torch.tensor([1.0, 2.0, 4.0]))
    torch.testing.assert_close(
        schedule.step_probability(torch.tensor(0.5), torch.tensor(0.75)), torch.tensor(0.5)
    )


# ----- collators -----------------------------------------------------------------------------------------------


class TestFlexMDMLayouts(FamilyBatches):
    family = "flexmdm"
    block_size = 6

    def test_lm_layout(self):
        batch = self.make_collator("lm")([{"input_ids": [10, 11, 12]}, {"input_ids": [13]}])
        assert batch["input_ids"].tolist() == [[BOS, 10, 11, 12, EOS, PAD], [BOS, 13, EOS, PAD, PAD, PAD]]
        assert batch["labels"].tolist() == [
            [-100, 10, 11, 12, -100, -100],
            [-100, 13, -100, -100, -100, -100],
        ]
        assert batch["attention_mask"].tolist() == [[1, 1, 1, 1, 1, 0], [1, 1, 1, 0, 0, 0]]

    def test_seq2seq_layout_and_stratified_times(self):
        examples = [{"prompt_ids": [7, 8], "target_ids": [10, 11]}] * 4
        batch = self.make_collator("seq2seq", input_block_size=4)(examples)
        assert batch["input_ids"][0].tolist() == [7, 8, BOS, 10, 11, EOS, PAD, PAD, PAD, PAD]
        assert batch["labels"][0].tolist() == [-100, -100, -100, 10, 11] + [-100] * 5
        t = batch["t"]
        assert bool(((t >= torch.arange(4) / 4 - 1e-6) & (t < (torch.arange(4) + 1) / 4)).all()), t
        assert batch["insertion_noise"].shape == batch["unmasking_noise"].shape == batch["input_ids"].shape

    def test_infill_layout_fixes_the_given_tokens(self):
        examples = [{"prompt_ids": [10, MASK, MASK, 13], "target_ids": [10, 11, 12, 13]}]
        batch = self.make_collator("infill")(examples)
        assert batch["input_ids"][0].tolist() == [BOS, 10, 11, 12, 13, EOS]
        assert batch["labels"][0].tolist() == [-100, -100, 11, 12, -100, -100]
        pred = self.make_collator("infill_pred")(examples)
        assert pred["target_ids"][0].tolist() == [10, 11, 12, 13, EOS, PAD] and pred["infill"]


# ----- noise and loss --------------------------------------------------------------------------------------------


class TestFlexMDMNoiseAndLoss(TinyFamily):
    family = "flexmdm"

    def test_noise_deletes_masks_and_counts_gaps(self):
        config = self.make_config()
        clean = torch.tensor([[7, BOS, 10, 11, 12, 13, EOS, PAD]])
        labels = torch.tensor([[-100, -100, 10, 11, 12, 13, -100, -100]])
        mask = clean.ne(PAD).long()
        # linear schedules: insertion time = u; unmasking time = tau + v (1 - tau). At t = 0.5: 10 and 12 are
        # missing (tau 0.9, 0.7); 11 is masked (tau 0.2, upsilon 0.2 + 0.5 * 0.8 = 0.6); 13 is clean (upsilon 0.28).
        insertion = torch.tensor([[0.0, 0.0, 0.9, 0.2, 0.7, 0.1, 0.0, 0.0]])
        unmasking = torch.tensor([[0.0, 0.0, 0.0, 0.5, 0.0, 0.2, 0.0, 0.0]])
        noised = flexmdm_noise(clean, mask, labels, config, torch.tensor([0.5]), insertion, unmasking)
        assert noised["input_ids"][0].tolist() == [7, BOS, MASK, 13, EOS, PAD, PAD, PAD]
        assert noised["clean"][0].tolist()[:5] == [7, BOS, 11, 13, EOS]
        assert noised["gaps"][0].tolist()[:5] == [0, 0, 1, 1, 0]
        assert noised["gap_mask"][0].tolist()[:5] == [False, False, True, True, True]
        assert noised["masked"][0].tolist()[:5] == [False, False, True, False, False]
        assert int(noised["num_labels"]) == 4

    def test_loss_on_a_hand_checked_case(self):
        config = self.make_config(vocab_size=8, loss_weight_cap=None)  # the ELBO weights of xlm-core
        noised = {
            "t": torch.tensor([0.5]),  # linear: both rates 1 / (1 - t) = 2
            "masked": torch.tensor([[False, True, False]]),
            "clean": torch.tensor([[BOS, 5, EOS]]),
            "gaps": torch.tensor([[0, 2, 0]]),
            "gap_mask": torch.tensor([[False, True, True]]),
            "num_labels": torch.tensor(3),
        }
        logits = torch.zeros(1, 3, 8)  # uniform: CE = log 8
        gap_lengths = torch.tensor([[5.0, 1.0, 0.5]])  # position 0 is not a gap: not counted
        total, count = flexmdm_loss(logits, gap_lengths, None, noised, config)
        bregman = (1 - 2 + 2 * math.log(2)) + (0.5 - 1e-6 + 1e-6 * (math.log(1e-6) - math.log(0.5)))
        assert math.isclose(float(total), 2 * math.log(8) + 2 * bregman, rel_tol=1e-5)
        assert int(count) == 3

    def test_weight_cap_bounds_the_rate_weights(self):
        noised = {
            "t": torch.tensor([0.5, 0.999]),  # linear rates 2 and 1000
            "masked": torch.tensor([[False, True], [False, True]]),
            "clean": torch.tensor([[BOS, 5], [BOS, 5]]),
            "gaps": torch.tensor([[0, 1], [0, 1]]),
            "gap_mask": torch.tensor([[False, True], [False, True]]),
            "num_labels": torch.tensor(2),
        }
        logits, gap_lengths = torch.zeros(2, 2, 8), torch.ones(2, 2)  # CE log 8 at each mask, Bregman 0
        totals = {
            cap: float(
                flexmdm_loss(
                    logits, gap_lengths, None, noised, self.make_config(vocab_size=8, loss_weight_cap=cap)
                )[0]
            )
            for cap in (None, 1.0, 10.0)
        }
        assert math.isclose(totals[None], (2 + 1000) * math.log(8), rel_tol=1e-4)
        assert math.isclose(totals[1.0], 2 * math.log(8), rel_tol=1e-5)  # the default: equal weights
        assert math.isclose(totals[10.0], (2 + 10) * math.log(8), rel_tol=1e-5)
        assert self.make_config().loss_weight_cap == 1.0
        with pytest.raises(ValueError, match="loss_weight_cap"):
            self.make_config(loss_weight_cap=0.0)

    def test_distribution_head_loss_is_a_weighted_cross_entropy(self):
        config = self.make_config(vocab_size=8, gap_head="distribution", max_gap_length=4)
        noised = {
            "t": torch.tensor([0.0]),  # rates 1
            "masked": torch.zeros(1, 2, dtype=torch.bool),
            "clean": torch.tensor([[BOS, EOS]]),
            "gaps": torch.tensor([[0, 9]]),  # beyond the last class: counts as class 3
            "gap_mask": torch.tensor([[False, True]]),
            "num_labels": torch.tensor(9),
        }
        gap_logits = torch.zeros(1, 2, 4)
        total, _ = flexmdm_loss(torch.zeros(1, 2, 8), torch.zeros(1, 2), gap_logits, noised, config)
        assert math.isclose(float(total), math.log(4), rel_tol=1e-6)

    def test_forward_with_labels_is_sum_over_count(self):
        model = self.make_model()
        batch = FamilyBatches.make_collator(self._batches(), "seq2seq", seed=0)(
            self._batches().make_examples("seq2seq")
        )
        with torch.no_grad():
            output = model(**batch)
            total, count = flexmdm_loss(output.logits, output.gap_lengths, None, output.noised, model.config)
        torch.testing.assert_close(output.loss, total / count)
        assert int(count) == int(batch["labels"].ne(-100).sum())

    def _batches(self):
        batches = FamilyBatches()
        batches.family = self.family
        return batches


# ----- generation ----------------------------------------------------------------------------------------------


class TestFlexMDMGeneration(TinyFamily):
    family = "flexmdm"

    def model_with_gap(self, value: float):
        """A model whose gap head predicts `value` missing tokens before every position."""
        model = self.make_model()
        with torch.no_grad():
            model.gap_head.out_proj.weight.zero_()
            model.gap_head.out_proj.bias.fill_(value + math.log(-math.expm1(-value)))  # softplus^-1
        return model

    def test_infilling_grows_only_the_marked_gap(self):
        tokenizer = self.make_tokenizer()
        model = self.model_with_gap(3.0)
        inputs = tokenizer(["3 [MASK] 8 9"], return_tensors="pt")
        output = model.generate(**inputs, num_steps=5, max_new_tokens=6, suppress_tokens=list(range(7)))
        row = [t for t in output.sequences[0].tolist() if t != PAD]
        three, eight = tokenizer.convert_tokens_to_ids(["3", "8"])
        assert row[0] == BOS and row[-1] == EOS
        assert row[1] == three and row[-3:-1] == [eight, eight + 1], row  # given tokens kept, in order
        assert len(row) - 5 == 6  # the gap grew to the budget: the model asked for more than 6
        assert output.new_token_mask[0].sum() == 6

    def test_infilling_after_a_source_keeps_the_source_before_its_bos(self):
        tokenizer = self.make_tokenizer()
        model = self.model_with_gap(2.0)
        inputs = tokenizer(["5 6 [BOS] 3 [MASK] 8"], return_tensors="pt")
        output = model.generate(**inputs, num_steps=5, max_new_tokens=2, suppress_tokens=list(range(7)))
        row = [t for t in output.sequences[0].tolist() if t != PAD]
        five, six, three, eight = tokenizer.convert_tokens_to_ids(["5", "6", "3", "8"])
        assert row[:4] == [five, six, BOS, three] and row[-2:] == [eight, EOS], row  # one [BOS]: the source's
        assert len(row) == 6 + 2 and output.new_token_mask[0].sum() == 2

    def test_prompt_layouts_place_bos_and_grow_only_before_eos(self):
        tokenizer = self.make_tokenizer()
        model = self.model_with_gap(3.0)
        inputs = tokenizer(["3 4"], return_tensors="pt")
        three, four = tokenizer.convert_tokens_to_ids(["3", "4"])
        options = {"num_steps": 5, "max_new_tokens": 2, "suppress_tokens": list(range(7))}
        for layout, start in (("seq2seq", [three, four, BOS]), ("lm", [BOS, three, four])):
            output = model.generate(**inputs, prompt_layout=layout, **options)
            row = [t for t in output.sequences[0].tolist() if t != PAD]
            assert row[:3] == start and row[-1] == EOS and len(row) == 3 + 2 + 1, (layout, row)
        with pytest.raises(ValueError, match="prompt_layout"):
            model.generate(**inputs, prompt_layout="centre", **options)

    def test_a_gap_the_model_predicts_empty_stays_empty(self):
        tokenizer = self.make_tokenizer()
        model = self.model_with_gap(0.01)
        inputs = tokenizer(["3 [MASK] 8"], return_tensors="pt")
        output = model.generate(**inputs, num_steps=5)
        assert [t for t in output.sequences[0].tolist() if t != PAD] == [
            BOS,
            *inputs["input_ids"][0][[0, 2]].tolist(),
            EOS,
        ]

    def test_history_frames_grow_from_the_prompt_to_the_result(self):
        tokenizer = self.make_tokenizer()
        model = self.model_with_gap(2.0)
        inputs = tokenizer(["3 4", "5"], return_tensors="pt", padding=True)
        output = model.generate(**inputs, num_steps=6, return_history=True)  # the deprecated name still works
        assert len(output.history) == 7
        assert torch.equal(output.history[-1], output.sequences)
        first = [[t for t in frame.tolist() if t != PAD] for frame in output.history[0]]
        assert first[1] == [tokenizer.convert_tokens_to_ids("5"), BOS, EOS]
        lengths = [int(frame.ne(PAD).sum()) for frame in output.history]
        assert lengths == sorted(lengths) and lengths[-1] > lengths[0]
        assert not bool(output.history[-1].eq(MASK).any())

    def test_greedy_insertion_keeps_the_rounded_total_of_each_row(self):
        expected = torch.tensor([[0.4, 0.4, 0.4, 0.0], [1.3, 0.2, 0.6, 0.45], [0.0, 0.0, 0.0, 0.0]])
        counts = largest_remainder(expected)
        # rounding each gap would insert nothing in row 0; the row's total 1.2 rounds to 1 (leftmost tie first)
        assert counts.tolist() == [[1, 0, 0, 0], [1, 0, 1, 1], [0, 0, 0, 0]]

    def test_greedy_generation_inserts_spread_thin_mass(self):
        tokenizer = self.make_tokenizer()
        model = self.model_with_gap(0.3)  # 0.3 expected per gap: no gap alone rounds up
        inputs = tokenizer(["3 [MASK] 5 [MASK] 7 [MASK] 9"], return_tensors="pt")
        output = model.generate(**inputs, num_steps=2, suppress_tokens=list(range(7)))
        # one insertion call at step probability 1: round(3 * 0.3) = 1 token in the three marked gaps
        assert int(output.new_token_mask[0].sum()) == 1

    def test_predictions_are_what_follows_bos(self):
        sequences = torch.tensor([[PAD, 7, BOS, 10, 11, EOS], [7, 8, BOS, 12, EOS, PAD]])
        assert flexmdm_predictions(sequences, BOS, PAD, 4).tolist() == [
            [10, 11, EOS, PAD],
            [12, EOS, PAD, PAD],
        ]

    def test_exported_folder_generates_and_runs_the_pipelines_without_xlm_hf(self, tmp_path):
        """`generate`, then the text-generation and infill pipelines of the exported folder. The model asks for 2
        more tokens wherever it may insert (new gaps included), so every row grows to `max_new_tokens`."""
        model, tokenizer = self.model_with_gap(2.0), self.make_tokenizer()
        export_model(model, tokenizer, tmp_path / "export", self.family)
        inputs = tokenizer(["3 4 5", "3 [MASK] 9"], return_tensors="pt", padding=True)
        expected = model.generate(**inputs, num_steps=5).sequences.tolist()
        output = model.generate(**tokenizer(["3 4 5"], return_tensors="pt"), **PIPELINE_OPTIONS)
        direct = tokenizer.decode(output.sequences[0][output.new_token_mask[0]], skip_special_tokens=True)
        code = ISOLATED.replace("FOLDER", repr(str(tmp_path / "export"))).replace(
            "OPTIONS", repr(PIPELINE_OPTIONS)
        )
        stdout = run_without_xlm_hf(code, cwd=str(tmp_path)).stdout
        report = json.loads(stdout.split("REPORT", 1)[1].strip().splitlines()[0])

        assert report["sequences"] == expected
        assert report["new"][0] == direct and len(direct.split()) == 5
        assert report["full"] == [f"{prompt} {new}" for prompt, new in zip(["3 4 5", "7"], report["new"])]
        assert report["batched"] == report["new"]  # left padding in a batch changes nothing
        # infilling with unknown length: both gaps grew, the given tokens are kept, in order
        first, second = (fill.split() for fill in report["infill"]["fills"])
        assert len(first) >= 1 and len(second) >= 1 and len(first) + len(second) == 5
        assert report["infill"]["generated_text"].split() == ["8", *first, "9", *second, "10"]
        (start,) = (fill.split() for fill in report["infill_start"]["fills"])
        assert start and report["infill_start"]["generated_text"].split() == [
            *start,
            "9",
        ]  # a gap right after [BOS]


PIPELINE_OPTIONS = {"num_steps": 4, "max_new_tokens": 5, "suppress_tokens": list(range(7))}

ISOLATED = r"""
import json
from transformers import AutoModel, AutoTokenizer, pipeline

folder, options = FOLDER, OPTIONS
model = AutoModel.from_pretrained(folder, trust_remote_code=True).eval()
tokenizer = AutoTokenizer.from_pretrained(folder, trust_remote_code=True)
inputs = tokenizer(["3 4 5", "3 [MASK] 9"], return_tensors="pt", padding=True)
generator = pipeline("text-generation", model=folder, trust_remote_code=True)
infiller = pipeline("infill", model=folder, trust_remote_code=True)
prompts = ["3 4 5", "7"]
report = {
    "sequences": model.generate(**inputs, num_steps=5).sequences.tolist(),
    "new": [generator(p, return_full_text=False, **options)[0]["generated_text"] for p in prompts],
    "full": [generator(p, **options)[0]["generated_text"] for p in prompts],
    "batched": [r[0]["generated_text"] for r in generator(prompts, return_full_text=False, batch_size=2, **options)],
    "infill": infiller("8 [MASK] 9 [MASK] [MASK] 10", **options)[0],
    "infill_start": infiller("[MASK] 9", **options)[0],
}
print("REPORT" + json.dumps(report))
"""
