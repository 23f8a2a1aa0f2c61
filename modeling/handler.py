"""Serving an xlm_hf checkpoint: the Inference Endpoints handler, and the generation + trajectory code that the Gradio
demo (`xlm-hf demo`, a Space) shares with it.

Inference Endpoints loads `handler.py` from the model repository, builds `EndpointHandler(path)` once and calls it
with each request's JSON:

```python
handler = EndpointHandler("path/to/checkpoint")
handler({"inputs": "3 7 7 12 3 15", "parameters": {"max_new_tokens": 14, "return_history": True}})
# [{"generated_text": "3 7 7 12 3 15 3 7 ...", "new_text": "3 7 ...", "history": [{"tokens": [...], "tags": [...]}, ...]}]
```

`inputs` is a prompt or a list of prompts; `[MASK]` marks a gap to infill (masked families fill one token per
`[MASK]`, insertion families any number per run of `[MASK]`s). `parameters` are the family's generation options
(`max_new_tokens`, `num_steps`, `do_sample`, `temperature`, `top_k`, `top_p`, ...), plus `seed`, `infilling`
(False refuses `[MASK]` in a prompt; default: infill when the prompt has one) and `return_history` (each result then
carries its generation trajectory). A request the handler cannot serve (no prompt, unknown words, too long,
unknown option) gets `{"error": "..."}`, never a traceback.

The trajectory is read from the generation history every family returns with `output_history=True`: masked
families return the canvas after each step, insertion families which token went where; an autoregressive model adds
one token per step. Each step is one frame: its tokens and a tag per token (`"new"`: written at this step, `"mask"`:
a gap still to fill, `""`: otherwise).

Hub-side file: imports only torch and transformers. It imports no sibling module (Inference Endpoints imports it
as a top-level module); the checkpoint's own classes come through `trust_remote_code`.
"""

import difflib
from typing import Any

import torch
from transformers import AutoModel, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

# Options every decoder understands, shown first (in this order) by the demo; a family's own options follow.
COMMON_OPTIONS = ("max_new_tokens", "num_steps", "do_sample", "temperature", "top_k", "top_p")
# Options of the autoregressive family (transformers' own GenerationConfig has hundreds of fields).
AUTOREGRESSIVE_OPTIONS = ("max_new_tokens", "do_sample", "temperature", "top_k", "top_p", "num_beams")
# Options a request or the demo never sets: the output's form is the handler's business.
RESERVED_OPTIONS = ("output_history", "return_dict_in_generate", "num_return_sequences")


def load_checkpoint(path: str) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """The model (eval mode, on a GPU when there is one) and tokenizer of an exported folder or Hub id."""
    model = AutoModel.from_pretrained(path, trust_remote_code=True)
    tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=True)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    return model.to(device).eval(), tokenizer


def is_autoregressive(model: PreTrainedModel) -> bool:
    """Whether the model decodes with transformers' own `generate` (its generation config is a plain one)."""
    return not hasattr(type(model.generation_config), "_defaults")


def can_infill(model: PreTrainedModel) -> bool:
    """Whether prompts may hold `[MASK]` gaps (the checkpoint ships an `infill` pipeline)."""
    return "infill" in (getattr(model.config, "custom_pipelines", None) or {})


def inserts_freely(model: PreTrainedModel) -> bool:
    """Whether a run of `[MASK]`s is one gap of free length (insertion families) rather than one token per mask:
    a family that fills masks in place adds nothing after the text when infilling (`infill_defaults`)."""
    return can_infill(model) and "max_new_tokens" not in getattr(
        model.generation_config, "infill_defaults", {}
    )


def generation_options(model: PreTrainedModel) -> dict[str, Any]:
    """The generation options of the checkpoint's family with their current values (the saved generation config,
    else the family's defaults): the common ones first, then the family's own."""
    config = model.generation_config
    if is_autoregressive(model):
        names = list(AUTOREGRESSIVE_OPTIONS)
        defaults = {}
    else:
        names = [name for name in COMMON_OPTIONS if name in config._defaults]
        names += [name for name in config._defaults if name not in names]
        defaults = config._get_default_generation_params()
    options = {}
    for name in names:
        if name in RESERVED_OPTIONS or name.endswith("_token_id"):
            continue
        value = getattr(config, name, None)
        options[name] = defaults.get(name) if value is None else value
    return options


def encode_prompt(
    model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, text: str, infilling: bool | None = None
) -> tuple[torch.Tensor, torch.Tensor, bool]:
    """`(input_ids, attention_mask, infill)` of one prompt, or one ValueError that says what to change."""
    if not isinstance(text, str):
        raise ValueError(f"A prompt is a string, got {type(text).__name__}.")
    if not text.strip():
        raise ValueError("The prompt is empty: type a prompt or pick an example.")
    encoded = tokenizer([text], return_tensors="pt", add_special_tokens=False)
    ids = encoded["input_ids"]
    unknown = tokenizer.unk_token_id
    if unknown is not None and bool(ids.eq(unknown).any()):
        words = sorted({w for w in text.split() if tokenizer.convert_tokens_to_ids(w) == unknown})
        raise ValueError(
            f"The prompt has words outside the model's vocabulary: {', '.join(words) or tokenizer.unk_token}."
        )
    mask = tokenizer.mask_token_id
    has_gaps = mask is not None and bool(ids.eq(mask).any())
    infill = has_gaps if infilling is None else bool(infilling)
    if infill and not can_infill(model):
        raise ValueError("This model cannot infill: remove the [MASK] tokens from the prompt.")
    if infill and not has_gaps:
        raise ValueError(f"Nothing to infill: mark each gap in the prompt with {tokenizer.mask_token}.")
    special = set(tokenizer.all_special_ids) - ({mask} if infill else set())
    typed = sorted({int(i) for i in ids[0].tolist()} & special)
    if typed:
        raise ValueError(
            f"The prompt holds the special token(s) {', '.join(tokenizer.convert_ids_to_tokens(typed))}; prompts are "
            "plain text" + (" ([MASK] marks a gap to fill)" if can_infill(model) else "") + ". Remove them."
        )
    limit = getattr(model.config, "max_position_embeddings", None)
    if limit is not None and ids.shape[1] >= limit:
        raise ValueError(
            f"The prompt is too long: {ids.shape[1]} tokens, and the model reads at most {limit} positions "
            "(with the tokens it generates). Shorten it."
        )
    device = model.device
    return ids.to(device), encoded["attention_mask"].to(device), infill


def generate(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    text: str,
    options: dict[str, Any] | None = None,
    infilling: bool | None = None,
    return_history: bool = False,
) -> dict[str, Any]:
    """Generates from one prompt: `{"generated_text", "new_text", "num_steps"}` and, with `return_history`, the
    trajectory (`"history"`: one frame per step). Raises ValueError for what the caller should change."""
    options = dict(options or {})
    reserved = sorted(set(options) & set(RESERVED_OPTIONS))
    if reserved:
        raise ValueError(f"{', '.join(reserved)} cannot be set here: the handler decides the output's form.")
    seed = options.pop("seed", None) if is_autoregressive(model) else options.get("seed")
    input_ids, attention_mask, infill = encode_prompt(model, tokenizer, text, infilling)
    if infill:  # the family's infilling options (masked models add nothing after the text) unless set
        for key, value in getattr(model.generation_config, "infill_defaults", {}).items():
            options.setdefault(key, value)
    if is_autoregressive(model):
        options["output_scores"] = True  # one score per step: how many tokens were generated
    else:
        options["output_history"] = True
    if seed is not None and is_autoregressive(model):
        torch.manual_seed(int(seed))
    with torch.no_grad():
        output = model.generate(
            input_ids=input_ids, attention_mask=attention_mask, return_dict_in_generate=True, **options
        )
    frames = trajectory(output, tokenizer, model, input_ids)
    sequence = output.sequences[0]
    pad = tokenizer.pad_token_id
    real = sequence if pad is None else sequence[sequence.ne(pad)]
    new_mask = _new_columns(output, input_ids)[0]
    result = {
        "generated_text": tokenizer.decode(real, skip_special_tokens=True).strip(),
        "new_text": tokenizer.decode(sequence[new_mask], skip_special_tokens=True).strip(),
        "num_steps": len(frames),
    }
    if return_history:
        result["history"] = frames
    return result


# ----- the trajectory ---------------------------------------------------------------------------------------------


def _new_columns(output: Any, input_ids: torch.Tensor) -> torch.Tensor:
    """Which columns of `output.sequences` the model generated (every family's `new_token_mask`; autoregressive
    output: the last `len(output.scores)` columns)."""
    mask = getattr(output, "new_token_mask", None)
    if mask is not None:
        return mask.bool()
    sequences = output.sequences
    new = torch.zeros_like(sequences, dtype=torch.bool)
    steps = len(output.scores) if getattr(output, "scores", None) is not None else 0
    new[:, sequences.shape[1] - steps if steps else input_ids.shape[1] :] = True
    return new


def _frame(tokenizer: PreTrainedTokenizerBase, ids: list[int], new: set[int]) -> dict[str, Any]:
    """One step as `{"tokens", "tags", "text"}`; pad tokens dropped."""
    mask, pad = tokenizer.mask_token_id, tokenizer.pad_token_id
    special = set(tokenizer.all_special_ids)
    tokens, tags = [], []
    for index, token in enumerate(ids):
        if token == pad:
            continue
        text = tokenizer.convert_ids_to_tokens(token) if token in special else tokenizer.decode([token])
        tokens.append(text.strip() or text)
        tags.append("new" if index in new else "mask" if token == mask else "")
    text = tokenizer.decode([i for i in ids if i != pad], skip_special_tokens=True).strip()
    return {"tokens": tokens, "tags": tags, "text": text}


def _changed(before: list[int], after: list[int]) -> set[int]:
    """Indices of `after` that a step wrote: position by position for canvases of one width, else the tokens an
    alignment of the two does not match (a canvas that grew or shrank)."""
    if len(before) == len(after):
        return {i for i, (a, b) in enumerate(zip(before, after)) if a != b}
    changed = set(range(len(after)))
    matcher = difflib.SequenceMatcher(a=before, b=after, autojunk=False)
    for block in matcher.get_matching_blocks():
        changed -= set(range(block.b, block.b + block.size))
    return changed


def trajectory(
    output: Any,
    tokenizer: PreTrainedTokenizerBase,
    model: PreTrainedModel,
    input_ids: torch.Tensor,
    row: int = 0,
) -> list[dict[str, Any]]:
    """The frames of row `row`'s generation, one per step (see the module docstring), read from the history in
    `output`: insertions (`initial_sequences`, `history_positions`, `history_tokens`), canvases (`history`), or,
    without a history, one token per step after the prompt (autoregressive)."""
    pad = tokenizer.pad_token_id
    frames = []
    if getattr(output, "history_positions", None) is not None and output.initial_sequences is not None:
        tokens = [t for t in output.initial_sequences[row].tolist() if t != pad]
        for position, token in zip(
            output.history_positions[row].tolist(), output.history_tokens[row].tolist()
        ):
            if position >= 0:
                tokens.insert(position, token)
            frames.append(_frame(tokenizer, tokens, {position} if position >= 0 else set()))
        return frames
    history = getattr(output, "history", None)
    if history is not None:
        new = _new_columns(output, input_ids)[row]
        mask = tokenizer.mask_token_id if tokenizer.mask_token_id is not None else model.config.mask_token_id
        before = output.sequences[row].masked_fill(new, mask).tolist()  # the canvas before the first step
        before = [t for t in before if t != pad]
        for canvas in history:  # canvases may change width (a family that inserts masks): compare real tokens
            after = [t for t in canvas[row].tolist() if t != pad]
            frames.append(_frame(tokenizer, after, _changed(before, after)))
            before = after
        return frames
    sequence = output.sequences[row].tolist()
    columns = _new_columns(output, input_ids)[row].nonzero().flatten().tolist()
    for column in columns:  # one token per step, left to right
        frames.append(_frame(tokenizer, sequence[: column + 1], {column}))
    return frames


# ----- Inference Endpoints ---------------------------------------------------------------------------------------


class EndpointHandler:
    """The custom handler Inference Endpoints builds from `handler.py` (see the module docstring)."""

    def __init__(self, path: str = ""):
        self.model, self.tokenizer = load_checkpoint(path)

    def __call__(self, data: dict[str, Any]) -> list[dict[str, Any]] | dict[str, str]:
        try:
            return self._serve(data)
        except Exception as error:  # noqa: BLE001
            # what the request should change, as JSON (a traceback would say nothing useful to a client)
            return {"error": " ".join(str(error).split()) or type(error).__name__}

    def _serve(self, data: Any) -> list[dict[str, Any]]:
        if not isinstance(data, dict) or "inputs" not in data:
            raise ValueError(
                'The request must be a JSON object with "inputs" (a prompt or a list of prompts).'
            )
        inputs, parameters = data["inputs"], data.get("parameters") or {}
        prompts = inputs if isinstance(inputs, list) else [inputs]
        if not prompts or not all(isinstance(p, str) for p in prompts):
            raise ValueError('"inputs" must be a prompt (a string) or a non-empty list of prompts.')
        if not isinstance(parameters, dict):
            raise ValueError('"parameters" must be a JSON object of generation options.')
        parameters = dict(parameters)
        return_history = bool(parameters.pop("return_history", False))
        infilling = parameters.pop("infilling", None)
        known = set(generation_options(self.model)) | {"seed"}
        unknown = sorted(set(parameters) - known)
        if unknown:
            raise ValueError(
                f"Unknown parameters {unknown}; this model takes {', '.join(sorted(known))}, return_history and "
                "infilling."
            )
        return [
            generate(self.model, self.tokenizer, prompt, parameters, infilling, return_history)
            for prompt in prompts
        ]


__all__ = [
    "EndpointHandler",
    "can_infill",
    "encode_prompt",
    "generate",
    "generation_options",
    "inserts_freely",
    "is_autoregressive",
    "load_checkpoint",
    "trajectory",
]
