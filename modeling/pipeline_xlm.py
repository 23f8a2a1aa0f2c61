"""Pipelines for the non-autoregressive families: text generation and infilling, shipped with the checkpoint.

An exported folder of a masked (MLM, MDLM) or insertion (ILM) model lists these classes in `config.json`'s
`custom_pipelines`, so that, with only torch and transformers installed,

```python
from transformers import pipeline

generator = pipeline("text-generation", model="org/model", trust_remote_code=True)
generator("3 7 7 12 3 15", max_new_tokens=14, num_steps=14)   # any generation option of the family
infiller = pipeline("infill", model="org/model", trust_remote_code=True)
infiller("The [MASK] sat on the mat")
```

- `text-generation` (`XLMTextGenerationPipeline`): prompt -> continuation. transformers' own text-generation
  pipeline assumes that the output starts with the prompt, column for column, which holds for autoregressive models
  but not for an insertion model (`[CLS] prompt [BOS] ...`). This pipeline asks the model's output which tokens are
  new (its `new_token_mask`, which every family's `generate` returns). Every keyword that is not
  a pipeline option goes to `model.generate` (`num_steps=`, `sampler=`, `stopping_threshold=`, ...).
- `text-generation` of the autoregressive family (`XLMCausalTextGenerationPipeline`): transformers' own pipeline,
  with two differences that come from the prompt layout. `handle_long_generation="hole"` keeps room for the
  `[BOS]` that `generate` adds after the prompt, and the full text joins prompt and continuation as the
  tokenizer decodes them together (a word-level tokenizer puts a space between words; transformers' pipeline
  glues the decoded continuation to the prompt text, which only works for tokenizers whose tokens carry their
  leading space).
- `infill` (`XLMInfillPipeline`): every `[MASK]` (the tokenizer's mask token) of the text is filled. Masked models
  put exactly one token per `[MASK]`; insertion models treat a run of `[MASK]`s as one gap of free length. Returns the
  filled text and the text of each gap.

Hub-side file: imports only torch and transformers.
"""

from typing import Any

import torch
from transformers import Pipeline
from transformers.pipelines.text_generation import ReturnType, TextGenerationPipeline

from .generation_utils import new_token_mask

PIPELINE_OPTIONS = ("return_full_text", "skip_special_tokens", "clean_up_tokenization_spaces")


def _sequences(output: Any) -> torch.Tensor:
    return output.sequences if hasattr(output, "sequences") else output


class _XLMPipelineBase(Pipeline):
    _load_tokenizer = True
    _load_processor = False
    _load_image_processor = False
    _load_feature_extractor = False

    def _pad_token_id(self) -> int:
        pad = self.tokenizer.pad_token_id
        if pad is None:
            pad = getattr(self.model.config, "pad_token_id", None)
        return 0 if pad is None else pad

    def _generate(self, input_ids, attention_mask, generate_kwargs: dict[str, Any]):
        # the output dict carries `new_token_mask`: which tokens are new, for every family
        kwargs = {**generate_kwargs, "return_dict_in_generate": True}
        return self.model.generate(input_ids=input_ids, attention_mask=attention_mask, **kwargs)

    def _encode(self, text: str) -> dict[str, torch.Tensor]:
        if not isinstance(text, str):
            raise ValueError(
                f"{type(self).__name__} takes a string (or a list of strings), got {type(text).__name__}."
            )
        encoded = self.tokenizer([text], return_tensors="pt", add_special_tokens=False)
        return {"input_ids": encoded["input_ids"], "attention_mask": encoded["attention_mask"]}

    def _decode(
        self, ids, skip_special_tokens: bool = True, clean_up_tokenization_spaces: bool | None = None
    ) -> str:
        return self.tokenizer.decode(
            ids,
            skip_special_tokens=skip_special_tokens,
            clean_up_tokenization_spaces=clean_up_tokenization_spaces,
        ).strip()


class XLMTextGenerationPipeline(_XLMPipelineBase):
    """Prompt -> continuation for masked and insertion LMs (see the module docstring).

    Options: `return_full_text` (default True: prompt and continuation, as the model's tokens read; False: only the
    generated tokens), `skip_special_tokens` (default True), `clean_up_tokenization_spaces`. Everything else goes to
    `model.generate`. Each result is `{"generated_text": str}`; one list per prompt with `num_return_sequences`
    entries.
    """

    def _sanitize_parameters(
        self,
        return_full_text=None,
        skip_special_tokens=None,
        clean_up_tokenization_spaces=None,
        **generate_kwargs,
    ):
        postprocess = {}
        if return_full_text is not None:
            postprocess["return_full_text"] = return_full_text
        if skip_special_tokens is not None:
            postprocess["skip_special_tokens"] = skip_special_tokens
        if clean_up_tokenization_spaces is not None:
            postprocess["clean_up_tokenization_spaces"] = clean_up_tokenization_spaces
        return {}, generate_kwargs, postprocess

    def preprocess(self, prompt_text: str) -> dict[str, Any]:
        inputs = self._encode(prompt_text)
        inputs["prompt_text"] = prompt_text
        return inputs

    def _forward(self, model_inputs: dict[str, Any], **generate_kwargs) -> dict[str, Any]:
        input_ids, attention_mask = model_inputs["input_ids"], model_inputs.get("attention_mask")
        batch_size = input_ids.shape[0]
        if input_ids.shape[1] == 0:  # an empty prompt: unconditional generation
            input_ids = attention_mask = None
        output = self._generate(input_ids, attention_mask, generate_kwargs)
        sequences = _sequences(output)
        new = new_token_mask(output, input_ids)
        per_prompt = sequences.shape[0] // batch_size
        return {
            "sequences": sequences.reshape(batch_size, per_prompt, -1),
            "new_tokens": new.reshape(batch_size, per_prompt, -1),
            "prompt_text": model_inputs["prompt_text"],
        }

    def postprocess(
        self,
        model_outputs: dict[str, Any],
        return_full_text: bool = True,
        skip_special_tokens: bool = True,
        clean_up_tokenization_spaces: bool | None = None,
    ) -> list[dict[str, str]]:
        records = []
        pad = self._pad_token_id()
        for sequence, new in zip(model_outputs["sequences"][0], model_outputs["new_tokens"][0]):
            ids = sequence if return_full_text else sequence[new]
            if return_full_text:
                ids = ids[ids.ne(pad)]
            records.append(
                {"generated_text": self._decode(ids, skip_special_tokens, clean_up_tokenization_spaces)}
            )
        return records


class XLMCausalTextGenerationPipeline(TextGenerationPipeline):
    """transformers' text-generation pipeline for the autoregressive family (see the module docstring).

    Every option of transformers' pipeline works as documented there; only `handle_long_generation="hole"` and
    the full text (`return_full_text=True`, the default) differ, as the layout of the prompt requires.
    """

    def preprocess(self, prompt_text, prefix="", handle_long_generation=None, **kwargs):
        inputs = super().preprocess(prompt_text, prefix=prefix, **kwargs)
        if handle_long_generation == "hole":
            self._keep_room_for_generation(inputs, kwargs)
        return inputs

    def _keep_room_for_generation(self, inputs: dict[str, Any], generate_kwargs: dict[str, Any]) -> None:
        """Drops the prompt's oldest tokens so that, laid out by `generate`, it leaves room for the new tokens."""
        input_ids = inputs["input_ids"]
        attention_mask = inputs.get("attention_mask")
        # the lengths `generate` will get, read as the parent's "hole" reads them
        params = self._get_set_generation_params(self._prepare_generate_kwargs(generate_kwargs))
        new_tokens = params.get("max_new_tokens")
        if new_tokens is None:
            new_tokens = params["max_length"] - input_ids.shape[-1]
            if new_tokens < 0:
                raise ValueError("We cannot infer how many new tokens are expected: pass max_new_tokens.")
        layout_tokens = 0
        if hasattr(self.model, "lay_out_prompts") and input_ids.shape[-1] > 0:
            layout_tokens = (
                self.model.lay_out_prompts(input_ids, attention_mask)[0].shape[-1] - input_ids.shape[-1]
            )
        limit = min(self.tokenizer.model_max_length, self.model.config.max_position_embeddings)
        keep_length = limit - new_tokens - layout_tokens
        if keep_length <= 0:
            raise ValueError(
                f"handle_long_generation='hole' cannot make room for max_new_tokens={new_tokens}: the model has "
                f"{limit} positions ({layout_tokens} taken by the prompt layout). Ask for fewer new tokens."
            )
        if input_ids.shape[-1] > keep_length:
            inputs["input_ids"] = input_ids[:, -keep_length:]
            if attention_mask is not None:
                inputs["attention_mask"] = attention_mask[:, -keep_length:]

    def postprocess(self, model_outputs, return_type=ReturnType.FULL_TEXT, **kwargs):
        records = super().postprocess(model_outputs, return_type=return_type, **kwargs)
        prompt_text = model_outputs["prompt_text"]
        if return_type not in (ReturnType.FULL_TEXT, ReturnType.NEW_TEXT):
            return records
        if return_type == ReturnType.FULL_TEXT and not isinstance(prompt_text, str):
            return records
        input_ids = model_outputs["input_ids"]
        width = 0 if input_ids is None else input_ids.shape[-1]
        if width and hasattr(self.model, "lay_out_prompts"):
            # the prompt as `generate` laid it out: `[BOS] prompt` (lm layout) puts its [BOS] in front
            width = self.model.lay_out_prompts(input_ids, model_outputs.get("attention_mask"))[0].shape[-1]
        decode_options = {
            "skip_special_tokens": kwargs.get("skip_special_tokens") is not False,
            "clean_up_tokenization_spaces": kwargs.get("clean_up_tokenization_spaces"),
        }
        for record, sequence in zip(records, model_outputs["generated_sequence"][0].tolist()):
            if return_type == ReturnType.NEW_TEXT:
                # the tokens after the laid-out prompt (transformers counts the prompt's own tokens only)
                record["generated_text"] = self.tokenizer.decode(sequence[width:], **decode_options)
                continue
            # decoded together, prompt and continuation are separated as the tokenizer separates tokens
            whole = self.tokenizer.decode(sequence, **decode_options)
            prompt = self.tokenizer.decode(sequence[:width], **decode_options)
            if width and whole.startswith(prompt):
                record["generated_text"] = prompt_text + whole[len(prompt) :]
        return records


class XLMInfillPipeline(_XLMPipelineBase):
    """Fills the `[MASK]`s of a text (see the module docstring).

    Each result is `{"generated_text": the filled text, "fills": [the text of each gap, left to right]}`; one list
    per input with `num_return_sequences` entries. Keywords go to `model.generate` (`num_steps=`, `temperature=`,
    `max_new_tokens=` as the most tokens an insertion model adds, ...). Masked models add no tokens after the
    text (`max_new_tokens=0`).
    """

    def _sanitize_parameters(self, skip_special_tokens=None, **generate_kwargs):
        postprocess = {} if skip_special_tokens is None else {"skip_special_tokens": skip_special_tokens}
        return {}, generate_kwargs, postprocess

    def preprocess(self, text: str) -> dict[str, Any]:
        mask = self.tokenizer.mask_token
        if mask is None:
            raise ValueError("The tokenizer has no mask token: this model cannot infill.")
        inputs = self._encode(text)
        if not bool(inputs["input_ids"].eq(self.tokenizer.mask_token_id).any()):
            raise ValueError(
                f"Nothing to infill: mark each gap in the text with {mask}, e.g. 'The {mask} sat on the mat'."
            )
        return inputs

    def _forward(self, model_inputs: dict[str, Any], **generate_kwargs) -> dict[str, Any]:
        input_ids, attention_mask = model_inputs["input_ids"], model_inputs["attention_mask"]
        # the family's infilling options (masked models: fill the masks, add nothing after the text)
        for key, value in getattr(self.model.generation_config, "infill_defaults", {}).items():
            generate_kwargs.setdefault(key, value)
        output = self._generate(input_ids, attention_mask, generate_kwargs)
        sequences = _sequences(output)
        new = new_token_mask(output, input_ids)
        batch_size = input_ids.shape[0]
        per_prompt = sequences.shape[0] // batch_size
        pad, mask_id = self._pad_token_id(), self.tokenizer.mask_token_id
        # Which gap each output token filled (-1: not a fill), as a tensor so that batched pipelines split it.
        gap_ids = torch.full_like(sequences, -1)
        num_gaps = torch.zeros(batch_size, dtype=torch.long)
        for row in range(sequences.shape[0]):
            prompt = input_ids[row // per_prompt][attention_mask[row // per_prompt].bool()].tolist()
            num_gaps[row // per_prompt] = self._mark_gaps(sequences, new, gap_ids, row, prompt, pad, mask_id)
        return {
            "sequences": sequences.reshape(batch_size, per_prompt, -1),
            "gap_ids": gap_ids.reshape(batch_size, per_prompt, -1),
            "num_gaps": num_gaps,
        }

    def _mark_gaps(self, sequences, new, gap_ids, row: int, prompt: list[int], pad: int, mask_id: int) -> int:
        """Writes into `gap_ids[row]` the gap (a run of `[MASK]`s of the prompt) each filled token belongs to;
        returns the number of gaps."""
        kept_before, kept = [], 0  # per gap: how many of the prompt's kept tokens come before it
        for index, token in enumerate(prompt):
            if token != mask_id:
                kept += 1
            elif index == 0 or prompt[index - 1] != mask_id:
                kept_before.append(kept)
        # The output row: the layout tokens `generate` put before the text (ILM: `[CLS] [BOS]`; masked: none),
        # then the prompt's kept tokens with the new tokens between them. A new token after the token before a
        # gap belongs to that gap (masked models fill each [MASK] in place; insertion models insert any number).
        columns = (sequences[row].ne(pad) | new[row]).nonzero().flatten().tolist()
        special = set(self.tokenizer.all_special_ids)
        prefix = 0
        while (
            prefix < len(columns)
            and not bool(new[row, columns[prefix]])
            and int(sequences[row, columns[prefix]]) in special
        ):
            prefix += 1
        owner = {prefix + before - 1: g for g, before in enumerate(kept_before)}
        original_index = -1
        for column in columns:
            if not bool(new[row, column]):
                original_index += 1
            elif original_index in owner:
                gap_ids[row, column] = owner[original_index]
        return len(kept_before)

    def postprocess(
        self, model_outputs: dict[str, Any], skip_special_tokens: bool = True
    ) -> list[dict[str, Any]]:
        pad = self._pad_token_id()
        num_gaps = int(model_outputs["num_gaps"][0])
        records = []
        for sequence, gap_ids in zip(model_outputs["sequences"][0], model_outputs["gap_ids"][0]):
            records.append(
                {
                    "generated_text": self._decode(sequence[sequence.ne(pad)], skip_special_tokens),
                    "fills": [
                        self._decode(sequence[gap_ids.eq(g)], skip_special_tokens) for g in range(num_gaps)
                    ],
                }
            )
        return records


__all__ = [
    "XLMTextGenerationPipeline",
    "XLMCausalTextGenerationPipeline",
    "XLMInfillPipeline",
    "new_token_mask",
]
