"""Use an exported ILM folder the way a Hub user would: only torch and transformers, `import xlm_hf` blocked.

    python scripts/try_export.py outputs/main_job/star_easy_ilm examples.jsonl [--limit 200]

`examples.jsonl` holds one `{"prompt": ..., "target": ...}` object per line (the main job writes the first
test examples there). The script prints the exact match of

1. plain generation: `generate` on what the tokenizer returns for the prompts (left-padded batches), and
2. infilling: about half of each target's tokens replaced by `[MASK]` inside the laid-out row
   `[CLS] prompt [BOS] target-with-gaps`; insertions may go only where the masks were, the given tokens must
   stay in order.
"""

import argparse
import importlib.abc
import json
import random
import sys


class _BlockXlmHf(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "xlm_hf" or name.startswith("xlm_hf."):
            raise ImportError("xlm_hf is blocked: an exported folder must work without it")
        return None


sys.meta_path.insert(0, _BlockXlmHf())

import torch  # noqa: E402
from transformers import AutoModel, AutoTokenizer  # noqa: E402


def exact_match(generated: list[str], targets: list[str]) -> float:
    return sum(g.split() == t.split() for g, t in zip(generated, targets)) / len(targets)


def generate_after_bos(model, tokenizer, rows: list[list[int]], batch_size: int) -> list[str]:
    """Generates for token-id rows in batches; returns, per row, the text after its first `[BOS]` (what a plain
    prompt comes back as: `[CLS] prompt [BOS] generated`)."""
    texts = []
    for start in range(0, len(rows), batch_size):
        batch = tokenizer.pad({"input_ids": rows[start : start + batch_size]}, return_tensors="pt")
        with torch.no_grad():
            output = model.generate(**batch)
        for row in output.sequences.tolist():
            row = [t for t in row if t != tokenizer.pad_token_id]
            texts.append(tokenizer.decode(row[row.index(tokenizer.bos_token_id) + 1 :]))
    return texts


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("model_dir")
    parser.add_argument("examples")
    parser.add_argument("--limit", type=int, default=200)
    parser.add_argument("--batch-size", type=int, default=100)
    args = parser.parse_args()

    with open(args.examples) as handle:
        examples = [json.loads(line) for line in handle if line.strip()][: args.limit]
    if not examples:
        raise SystemExit(f"{args.examples} holds no examples.")
    model = AutoModel.from_pretrained(args.model_dir, trust_remote_code=True).eval()
    tokenizer = AutoTokenizer.from_pretrained(args.model_dir, trust_remote_code=True)
    if "xlm_hf" in sys.modules:
        raise SystemExit("xlm_hf was imported: the isolation is broken")
    print(f"loaded {type(model).__name__} from {args.model_dir} without xlm_hf")

    prompts, targets = [e["prompt"] for e in examples], [e["target"] for e in examples]
    generated = generate_after_bos(model, tokenizer, tokenizer(prompts)["input_ids"], args.batch_size)
    print(f"generation: exact match {exact_match(generated, targets):.4f} on {len(targets)} test examples")

    # Infilling: hide about half of each target, one [MASK] per run of hidden tokens, inside the laid-out row.
    rng = random.Random(0)
    rows, given = [], []
    for prompt, target in zip(prompts, targets):
        pieces, hidden_run = [], False
        for token in target.split():
            if rng.random() < 0.5:
                if not hidden_run:
                    pieces.append(tokenizer.mask_token)
                hidden_run = True
            else:
                pieces.append(token)
                hidden_run = False
        given.append([piece for piece in pieces if piece != tokenizer.mask_token])
        prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
        gapped_ids = tokenizer(" ".join(pieces), add_special_tokens=False)["input_ids"]
        rows.append([tokenizer.cls_token_id, *prompt_ids, tokenizer.bos_token_id, *gapped_ids])
    infilled = generate_after_bos(model, tokenizer, rows, args.batch_size)
    # The given tokens must be a subsequence of the result (in order, nothing moved or deleted).
    kept_in_order = 0
    for tokens, result in zip(given, infilled):
        remaining = iter(result.split())
        kept_in_order += all(token in remaining for token in tokens)
    print(
        f"infilling (about half of each target hidden): exact match {exact_match(infilled, targets):.4f}; "
        f"given tokens kept in order in {kept_in_order}/{len(rows)} rows"
    )


if __name__ == "__main__":
    main()
