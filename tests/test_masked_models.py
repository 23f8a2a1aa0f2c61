"""MLM and MDLM models: the common model contract, class names and model types, the generation config subclass
(round trip through save/load), and the exported folder used without xlm_hf (generate, infill, fill-mask)."""

import json

import pytest
import torch
from isolation import run_without_xlm_hf
from model_contract import ModelContract
from transformers import AutoConfig, AutoModel, AutoModelForMaskedLM, GenerationConfig
from xlm_hf.modeling.generation_mdlm import MDLMGenerationConfig
from xlm_hf.modeling.generation_mlm import MLMGenerationConfig

from xlm_hf.export import export_model
from xlm_hf.mdlm import MDLMConfig, MDLMForMaskedDiffusionLM
from xlm_hf.mlm import MLMConfig, MLMForMaskedLM
from xlm_hf.tokenization import build_number_tokenizer

TINY = dict(
    vocab_size=27,
    hidden_size=32,
    num_hidden_layers=2,
    num_attention_heads=2,
    intermediate_size=64,
    max_position_embeddings=48,
)


class TestMLMContract(ModelContract):
    family = "mlm"


class TestMDLMContract(ModelContract):
    family = "mdlm"
    # a non-zero output layer, so outputs (and their equality checks) are not trivially zero
    config_overrides = {"zero_init_output": False, "time_embedding_dim": 16}

    def extra_inputs(self, input_ids):
        return {"noise_level": torch.linspace(0.5, 5.0, input_ids.shape[0])}


class TestMDLMWithoutTimeContract(ModelContract):
    family = "mdlm"
    config_overrides = {"zero_init_output": False, "time_conditioning": False}
    # same exported files as TestMDLMContract; the isolated subprocess is the slow part, run it once per family
    test_exported_folder_loads_without_xlm_hf = None


class TestMDLMWithNeighborWindowContract(ModelContract):
    """The neighbour embeddings (on in the masked star recipes) keep the whole contract: left padding and batch
    invariance, export without xlm_hf, every parameter trained."""

    family = "mdlm"
    config_overrides = {"zero_init_output": False, "time_conditioning": False, "neighbor_token_window": 2}


# ---- names and types ----------------------------------------------------------------------------------------------


def test_model_types_class_names_and_auto_classes():
    for config_class, model_class, model_type in (
        (MLMConfig, MLMForMaskedLM, "xlm-hf-mlm"),
        (MDLMConfig, MDLMForMaskedDiffusionLM, "xlm-hf-mdlm"),
    ):
        assert config_class.model_type == model_type
        assert "ForCausalLM" not in model_class.__name__
        assert model_class.can_generate()
        assert isinstance(AutoConfig.for_model(model_type), config_class)
        model = AutoModel.from_config(config_class(**TINY))
        assert type(model) is model_class
        assert type(AutoModelForMaskedLM.from_config(config_class(**TINY))) is model_class
    assert MLMForMaskedLM(MLMConfig(**TINY)).loss_type != "ForCausalLM"


def test_mlm_config_refuses_time_conditioning():
    with pytest.raises(ValueError, match="not time-conditioned"):
        MLMConfig(**TINY, time_conditioning=True)


def test_masked_lm_loss_with_labels_and_num_items():
    torch.manual_seed(0)
    model = MLMForMaskedLM(MLMConfig(**TINY))
    ids = torch.tensor([[9, 2, 11, 2]])
    labels = torch.tensor([[-100, 10, -100, 12]])
    out = model(input_ids=ids, labels=labels)
    logits = out.logits[0]
    manual = (torch.nn.functional.cross_entropy(logits[[1, 3]], torch.tensor([10, 12]), reduction="sum")) / 2
    torch.testing.assert_close(out.loss, manual)
    torch.testing.assert_close(model(input_ids=ids, labels=labels, num_items_in_batch=4).loss, manual / 2)


def test_mdlm_forward_loss_counts_masked_inputs_only():
    torch.manual_seed(0)
    model = MDLMForMaskedDiffusionLM(MDLMConfig(**TINY, zero_init_output=False, time_embedding_dim=16))
    ids = torch.tensor([[9, 2, 11, 2]])
    labels = torch.tensor([[-100, 10, 11, 12]])  # ELBO-style labels: a visible position is labelled too
    out = model(input_ids=ids, labels=labels, noise_level=torch.tensor([1.0]))
    # the MDLM objective: each masked token weighted by sigma'(t) / (exp(sigma(t)) - 1), at sigma(t) = 1
    schedule = model.config.get_noise_schedule()
    t = schedule.t_from_sigma(torch.tensor(1.0))
    weight = schedule.rate(t) / torch.expm1(torch.tensor(1.0))
    ce = torch.nn.functional.cross_entropy(out.logits[0, [1, 3]], torch.tensor([10, 12]), reduction="sum")
    torch.testing.assert_close(out.loss, ce * weight / 3)


# ---- generation config --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "model_class, config_class, generation_class",
    [
        (MLMForMaskedLM, MLMConfig, MLMGenerationConfig),
        (MDLMForMaskedDiffusionLM, MDLMConfig, MDLMGenerationConfig),
    ],
)
def test_generation_config_subclass_round_trips_through_save_and_load(
    tmp_path, model_class, config_class, generation_class
):
    model = model_class(config_class(**TINY))
    assert type(model.generation_config) is generation_class
    model.generation_config.update(
        num_steps=7,
        temperature=0.0,
        unmasking_order="entropy",
        block_size=4,
        max_new_tokens=8,
        seed=3,
        top_p=0.9,
    )
    model.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "generation_config.json").read_text())
    assert saved["num_steps"] == 7 and saved["temperature"] == 0.0 and saved["unmasking_order"] == "entropy"
    reloaded = model_class.from_pretrained(tmp_path)
    config = reloaded.generation_config
    assert type(config) is generation_class
    for key, value in dict(
        num_steps=7,
        temperature=0.0,
        unmasking_order="entropy",
        block_size=4,
        max_new_tokens=8,
        seed=3,
        top_p=0.9,
    ).items():
        assert getattr(config, key) == value, key
    assert config.threshold is None  # unset fields stay unset (family defaults apply at generation time)
    # the standalone class round trips too, and is equal to itself after loading
    assert generation_class.from_pretrained(tmp_path) == config


def test_generation_config_validation_and_legacy_hooks():
    with pytest.raises(ValueError, match="not both"):
        MLMGenerationConfig(top_k=2, top_p=0.5)
    with pytest.raises(ValueError, match="Unknown generation arguments"):
        MLMGenerationConfig(num_beams=3)
    with pytest.raises(ValueError, match="unmasking_order"):
        MDLMGenerationConfig(unmasking_order="left_to_right")
    with pytest.raises(ValueError, match="sampler"):
        MLMGenerationConfig(sampler="ancestral")
    with pytest.raises(NotImplementedError):
        MLMGenerationConfig.from_model_config(MLMConfig(**TINY))
    assert MDLMGenerationConfig(sampler="ancestral").sampler == "ancestral"


def test_a_plain_generation_config_is_accepted_by_generate():
    torch.manual_seed(0)
    model = MLMForMaskedLM(MLMConfig(**TINY)).eval()
    plain = GenerationConfig(max_new_tokens=3, temperature=0.5)
    out = model.generate(input_ids=torch.tensor([[9, 10]]), generation_config=plain, seed=0)
    assert out.sequences.shape == (1, 2 + 1 + 3)


# ---- exported folders without xlm_hf -----------------------------------------------------------------------------


def test_exported_folders_generate_infill_and_fill_mask_without_xlm_hf(tmp_path):
    tokenizer = build_number_tokenizer(20)
    expected = {}
    prompts = ["3 4 5 6", "7 8"]
    infill_text = "3 [MASK] 5 [MASK] 7"
    for name, model in (
        ("mlm", MLMForMaskedLM(MLMConfig(**TINY))),
        ("mdlm", MDLMForMaskedDiffusionLM(MDLMConfig(**TINY, zero_init_output=False, time_embedding_dim=16))),
    ):
        torch.manual_seed(0)
        with torch.no_grad():
            for param in model.parameters():
                param.add_(torch.randn_like(param) * 0.3)
        model.eval()
        model.generation_config.num_steps = 4
        model.generation_config.temperature = 0.0
        export_model(model, tokenizer, tmp_path / name, name)
        batch = tokenizer(prompts, return_tensors="pt", padding=True)
        expected[name] = model.generate(**batch, max_new_tokens=5, seed=0).sequences.tolist()
        expected[name + "_infill"] = model.generate(
            **tokenizer([infill_text], return_tensors="pt"), max_new_tokens=0, seed=0
        ).sequences.tolist()
    (tmp_path / "expected.json").write_text(json.dumps(expected))

    result = run_without_xlm_hf(
        f"""
        import json, torch
        from transformers import AutoModel, AutoModelForMaskedLM, AutoTokenizer, AutoConfig, pipeline
        expected = json.load(open({str(tmp_path / "expected.json")!r}))
        for name in ("mlm", "mdlm"):
            folder = {str(tmp_path)!r} + "/" + name
            config = AutoConfig.from_pretrained(folder, trust_remote_code=True)
            model = AutoModel.from_pretrained(folder, trust_remote_code=True).eval()
            tokenizer = AutoTokenizer.from_pretrained(folder)
            print(name, "CONFIG", type(config).__name__, config.model_type)
            print(name, "MODULE", type(model).__module__)
            print(name, "GENCONFIG", type(model.generation_config).__name__, model.generation_config.num_steps)
            batch = tokenizer({prompts!r}, return_tensors="pt", padding=True)
            out = model.generate(**batch, max_new_tokens=5, seed=0)
            print(name, "GENERATE", out.sequences.tolist() == expected[name])
            infill = model.generate(**tokenizer([{infill_text!r}], return_tensors="pt"), max_new_tokens=0, seed=0)
            print(name, "INFILL", infill.sequences.tolist() == expected[name + "_infill"])
            print(name, "INFILLTEXT", tokenizer.decode(infill.sequences[0]))
            masked_lm = AutoModelForMaskedLM.from_pretrained(folder, trust_remote_code=True)
            fill = pipeline("fill-mask", model=folder, trust_remote_code=True)
            answers = fill("3 4 [MASK] 6", top_k=3)
            print(name, "FILLMASK", len(answers), all("[MASK]" not in a["sequence"] for a in answers),
                  type(fill.model).__name__)
        """,
        cwd=str(tmp_path),
    )
    out = result.stdout
    for name, config_name in (("mlm", "MLMConfig"), ("mdlm", "MDLMConfig")):
        assert f"{name} CONFIG {config_name} xlm-hf-{name}" in out
        assert f"{name} MODULE transformers_modules" in out
        assert f"{name} GENCONFIG {name.upper()}GenerationConfig 4" in out
        assert f"{name} GENERATE True" in out
        assert f"{name} INFILL True" in out
        assert f"{name} FILLMASK 3 True" in out
    infilled = [line for line in out.splitlines() if line.startswith("mlm INFILLTEXT")][0].split()[2:]
    assert infilled[0] == "3" and infilled[2] == "5" and infilled[4] == "7" and "[MASK]" not in infilled
