"""Text tasks: each corpus's loader on small files in that corpus's own format, the clean-up rules, the built-in
pydoc corpus, tokenization into packed blocks or padded chunks, and every family's collator fed text rows."""

import json
import lzma
import tarfile
from io import BytesIO

import pytest
import torch
from datasets import Dataset

from xlm_hf.experiment import DataArguments
from xlm_hf.families import get_family
from xlm_hf.tasks import get_task, load_task, prepare_task, resolve_task
from xlm_hf.tasks.text import (
    detokenize_lm1b,
    detokenize_wikitext,
    load_hub_splits,
    positions_restarting_after,
    text_collator,
    tokenize_documents,
    wikitext_articles,
)
from xlm_hf.text_tokenizers import train_bpe_tokenizer

DOCUMENTS = [
    "The quick brown fox jumps over the lazy dog.",
    "Return the sum of the two numbers, or raise an error when one of them is missing.",
    "A short one.",
    "Read the file line by line and yield every line that matches the pattern given.",
    "Tokenizers turn text into ids and back again without losing spaces.",
] * 4


@pytest.fixture(scope="module")
def tokenizer():
    return train_bpe_tokenizer(DOCUMENTS, vocab_size=320)


# --- clean-up rules ------------------------------------------------------------------------------------------


def test_lm1b_detokenizer_rejoins_punctuation_clitics_quotes_and_urls():
    assert detokenize_lm1b("I don 't know , he said .") == "I don't know, he said."
    assert detokenize_lm1b('He said " yes " ( twice ) at http : / / example.com !') == (
        'He said "yes" (twice) at http://example.com!'
    )
    assert detokenize_lm1b("It cost $ 5 ; really ?") == "It cost $5; really?"


def test_wikitext_detokenizer_joins_numbers_and_headings():
    text = "Intro . \n = = Reception = = \n The game sold 1 @,@ 000 copies ( mostly in Japan ) . \n"
    assert (
        detokenize_wikitext(text)
        == "Intro.\n== Reception ==\nThe game sold 1,000 copies (mostly in Japan).\n"
    )
    assert detokenize_wikitext("a well @-@ known author 's book") == "a well-known author's book"


def test_wikitext_lines_become_one_document_per_article():
    lines = [
        " = First = \n",
        " \n",
        " Text one . \n",
        " = = Part = = \n",
        " More . \n",
        " = Second = \n",
        " Two . \n",
    ]
    articles = wikitext_articles(lines)
    assert len(articles) == 2
    assert articles[0].startswith(" = First =") and "= = Part = =" in articles[0]
    assert articles[1] == " = Second = \n Two . \n"


# --- loaders in each corpus's own format ---------------------------------------------------------------------


def test_lm1b_release_folders(tmp_path):
    train_dir = tmp_path / "lm1b" / "training-monolingual.tokenized.shuffled"
    heldout_dir = tmp_path / "lm1b" / "heldout-monolingual.tokenized.shuffled"
    train_dir.mkdir(parents=True)
    heldout_dir.mkdir(parents=True)
    (train_dir / "news.en-00001-of-00100").write_text("I don 't know , he said .\nIt rains .\n")
    (heldout_dir / "news.en.heldout-00000-of-00050").write_text("Where is it ?\n")
    splits = load_task(f"text_lm1b:{tmp_path / 'lm1b'}", tmp_path / "cache")
    assert splits["train"]["text"] == ["I don't know, he said.", "It rains."]
    assert splits["test"]["text"] == ["Where is it?"] == splits["validation"]["text"]  # as in MDLM
    assert get_task("text_lm1b").layout == "pad" and get_task("text_lm1b").tokenizer == "bert-base-uncased"


def test_openwebtext_xz_archives_hold_out_the_last_documents(tmp_path):
    archive = tmp_path / "owt" / "urlsf_subset00-1_data.xz"
    archive.parent.mkdir()
    with tarfile.open(archive, "w:xz") as tar:
        for index in range(20):
            data = f"Document number {index}.\nIt has two lines.".encode()
            info = tarfile.TarInfo(f"0001-{index:03d}.txt")
            info.size = len(data)
            tar.addfile(info, BytesIO(data))
    splits = load_task(f"text_owt:{archive.parent}", tmp_path / "cache")
    assert len(splits["train"]) == 19 and splits["validation"]["text"] == [
        "Document number 19.\nIt has two lines."
    ]
    assert lzma.open(archive).read(1)  # the test's archive really is xz


def test_wikitext103_raw_files(tmp_path):
    folder = tmp_path / "wikitext-103-raw"
    folder.mkdir()
    article = " = Valkyria = \n \n The game @-@ play is fast . \n = = Plot = = \n It ends . \n"
    (folder / "wiki.train.raw").write_text(article + " = Other = \n Text . \n")
    (folder / "wiki.valid.raw").write_text(" = Valid = \n One . \n")
    (folder / "wiki.test.raw").write_text(" = Test = \n Two . \n")
    splits = load_task(f"text_wikitext103:{folder}", tmp_path / "cache")
    assert splits["train"]["text"][0] == "= Valkyria =\n\nThe game-play is fast.\n== Plot ==\nIt ends."
    assert len(splits["train"]) == 2 and splits["validation"]["text"] == ["= Valid =\nOne."]


def test_tinystories_txt_files_split_on_endoftext(tmp_path):
    folder = tmp_path / "tinystories"
    folder.mkdir()
    (folder / "TinyStoriesV2-GPT4-train.txt").write_text(
        "Once upon a time.\n<|endoftext|>\nTom ran.\n<|endoftext|>\n"
    )
    (folder / "TinyStoriesV2-GPT4-valid.txt").write_text("Lily sang.\n<|endoftext|>")
    splits = load_task(f"text_tinystories:{folder}", tmp_path / "cache")
    assert splits["train"]["text"] == ["Once upon a time.", "Tom ran."]
    assert splits["validation"]["text"] == ["Lily sang."]


@pytest.mark.parametrize("suffix", ["txt", "jsonl", "parquet"])
def test_local_files_by_format_and_split_name(tmp_path, suffix):
    folder = tmp_path / "corpus"
    folder.mkdir()
    for split, docs in (("train", DOCUMENTS[:4]), ("validation", DOCUMENTS[4:5])):
        path = folder / f"{split}.{suffix}"
        if suffix == "txt":
            path.write_text("\n".join(docs) + "\n\n")
        elif suffix == "jsonl":
            path.write_text("".join(json.dumps({"text": d, "id": i}) + "\n" for i, d in enumerate(docs)))
        else:
            Dataset.from_dict({"text": docs}).to_parquet(str(path))
    splits = load_task(f"text:{folder}", tmp_path / "cache")
    assert splits["train"]["text"] == DOCUMENTS[:4]
    assert splits["validation"]["text"] == DOCUMENTS[4:5] == splits["test"]["text"]


def test_datasets_by_name_from_a_local_dataset_folder(tmp_path):
    folder = tmp_path / "my_dataset"
    folder.mkdir()
    (folder / "train.jsonl").write_text("".join(json.dumps({"text": d}) + "\n" for d in DOCUMENTS[:3]))
    (folder / "test.jsonl").write_text(json.dumps({"text": "held out"}) + "\n")
    splits = load_hub_splits(str(folder))  # `datasets.load_dataset(name)`, the path a Hub id takes
    assert splits["train"]["text"] == DOCUMENTS[:3] and splits["test"]["text"] == ["held out"]


def test_unreachable_dataset_is_one_clear_error(tmp_path):
    with pytest.raises(ValueError, match="cannot be loaded.*local copy"):
        prepare_task("text:no-such-org/no-such-corpus", tmp_path)
    with pytest.raises(ValueError, match="needs a source"):
        get_task("text")


def test_a_source_gets_its_own_cache_folder(tmp_path):
    (tmp_path / "a.txt").write_text("\n".join(DOCUMENTS))
    path = prepare_task(f"text:{tmp_path / 'a.txt'}", tmp_path / "cache")
    assert path.parent == tmp_path / "cache" and path.name.startswith("text-")
    assert get_task("text_pydoc").folder_name == "text_pydoc"  # the default source: the corpus's own name


# --- the built-in corpus -------------------------------------------------------------------------------------


def test_pydoc_corpus_is_deterministic_deduplicated_and_split_by_document(tmp_path, monkeypatch):
    from xlm_hf.tasks import text_pydoc

    source = tmp_path / "stdlib"
    (source / "pkg").mkdir(parents=True)
    (source / "test").mkdir()
    module = '"""A module that does several useful things for the reader."""\n'
    body = 'def f():\n    """Return one, which is a number that the caller can use later."""\n'
    (source / "a.py").write_text(module + body)
    (source / "pkg" / "b.py").write_text(
        module + 'class C:\n    """Too short."""\n'
    )  # a duplicate, a short one
    (source / "test" / "t.py").write_text(
        '"""Tests are skipped: they are not documentation at all, never."""\n'
    )
    monkeypatch.setattr(text_pydoc, "stdlib_folder", lambda: source)
    documents = text_pydoc.pydoc_documents()
    topics = len(documents) - 2
    assert documents[:2] == [
        "A module that does several useful things for the reader.",
        "Return one, which is a number that the caller can use later.",
    ]
    assert topics > 10  # pydoc_data's topics
    first, second = text_pydoc.pydoc_corpus_splits(), text_pydoc.pydoc_corpus_splits()
    assert first == second
    assert sorted(d for split in first.values() for d in split) == sorted(documents)
    assert len(first["validation"]) == round(len(documents) * 0.05)


# --- tokenization and layouts --------------------------------------------------------------------------------


def test_blocks_pack_documents_with_eos_between_them(tokenizer):
    rows = tokenize_documents(Dataset.from_dict({"text": DOCUMENTS}), tokenizer, 16, "blocks")["input_ids"]
    assert rows and all(len(row) == 16 for row in rows)
    stream = [
        t
        for d in DOCUMENTS
        for t in (*tokenizer(d, add_special_tokens=False)["input_ids"], tokenizer.eos_token_id)
    ]
    assert [t for row in rows for t in row] == stream[: 16 * len(rows)]  # run_clm: the remainder is dropped


def test_pad_layout_cuts_documents_into_chunks_that_never_mix(tokenizer):
    rows = tokenize_documents(Dataset.from_dict({"text": DOCUMENTS[:2]}), tokenizer, 8, "pad")["input_ids"]
    first = tokenizer(DOCUMENTS[0], add_special_tokens=False)["input_ids"]
    second = tokenizer(DOCUMENTS[1], add_special_tokens=False)["input_ids"]
    chunks = [first[i : i + 8] for i in range(0, len(first), 8)] + [
        second[i : i + 8] for i in range(0, len(second), 8)
    ]
    assert rows == chunks


def test_positions_restart_after_each_eos():
    ids = torch.tensor([[5, 6, 3, 7, 3, 8]])
    assert positions_restarting_after(ids, 3).tolist() == [[0, 1, 2, 0, 1, 0]]
    assert positions_restarting_after(ids, 3, head=1).tolist() == [[0, 1, 2, 3, 0, 1, 0]]


@pytest.mark.parametrize("family_name", ["arlm", "mlm", "mdlm"])
def test_packed_rows_keep_documents_apart_in_the_model(family_name, tokenizer):
    """A packed row's second document sees only itself: its logits equal those of the document alone."""
    family = get_family(family_name)
    eos = tokenizer.eos_token_id
    first, second = [10, 11, 12, 13, 14], [20, 21, 22, 23, 24, 25]
    block = [*first, eos, *second, eos]
    collator = text_collator(family, tokenizer, len(block), "blocks")
    batch = collator([{"input_ids": block}])
    head = batch["input_ids"].shape[1] - len(block)  # the ARLM starts a row with [BOS]
    assert batch["position_ids"][0, head + len(first) + 1 :].tolist() == list(range(len(second) + 1))
    torch.manual_seed(0)
    model = family.build_model(tokenizer, hidden_size=32, num_hidden_layers=1, num_attention_heads=2).eval()
    noise = {"noise_level": torch.tensor([1.0])} if family_name == "mdlm" else {}
    start = head + len(first) + 1
    with torch.no_grad():
        packed = model(
            input_ids=torch.tensor([[*([tokenizer.bos_token_id] * head), *block]]),
            position_ids=batch["position_ids"],
            **noise,
        ).logits
        alone = model(input_ids=torch.tensor([[*second, eos]]), **noise).logits
    torch.testing.assert_close(packed[0, start:], alone[0], rtol=1e-4, atol=1e-5)


def test_padded_rows_are_trimmed_to_the_longest_and_padding_carries_no_loss(tokenizer):
    examples = [{"input_ids": [10, 11, 12]}, {"input_ids": [10, 11, 12, 13, 14, 15]}]
    for name, layout in (("arlm", 2), ("mlm", 1), ("mdlm", 1)):  # [BOS] .. [EOS] and .. [EOS]
        batch = text_collator(get_family(name), tokenizer, 32, "pad")(examples)
        assert batch["input_ids"].shape[1] == 6 + layout, name
        assert batch["attention_mask"][0].tolist() == [1] * (3 + layout) + [0] * 3, name
        assert (batch["labels"][0, 3 + layout :] == -100).all(), name
    # the ILM deletes tokens before padding: its rows end where the longest kept row ends
    batch = text_collator(get_family("ilm"), tokenizer, 32, "pad")(examples)
    assert batch["input_ids"].shape[1] == int(batch["attention_mask"].sum(dim=1).max())
    assert (batch["input_ids"][:, :2] == torch.tensor([tokenizer.cls_token_id, tokenizer.bos_token_id])).all()


def test_the_ilm_refuses_packed_rows(tokenizer):
    with pytest.raises(ValueError, match="does not take packed rows.*packing=pad"):
        text_collator(get_family("ilm"), tokenizer, 32, "blocks")


def test_text_options_are_only_for_text_tasks():
    assert resolve_task(DataArguments(task="text_pydoc", packing="pad", block_size=64)).block_size == 64
    with pytest.raises(ValueError, match="options of text tasks"):
        resolve_task(DataArguments(task="star_easy", tokenizer="gpt2"))
    with pytest.raises(ValueError, match="packing must be one of"):
        resolve_task(DataArguments(task="text_pydoc", packing="tight"))


def test_the_wrapper_draws_each_batch_noise_as_the_trainer_places_it(tokenizer):
    from xlm_hf.collator_utils import set_batch_noise

    collator = text_collator(get_family("mdlm"), tokenizer, 16, "blocks", seed=3)
    assert collator.seed == 3
    examples = [{"input_ids": list(range(10, 26))}] * 4
    assert set_batch_noise(collator, first_batch=5)
    first = collator(examples)["input_ids"]
    set_batch_noise(collator, first_batch=5)
    assert torch.equal(collator(examples)["input_ids"], first)  # batch 5's noise, whoever asks
    set_batch_noise(collator, first_batch=6)
    assert not torch.equal(collator(examples)["input_ids"], first)


def test_the_mdlm_trainer_gives_a_wrapped_collator_its_model_schedule(tokenizer, tmp_path):
    from transformers import TrainingArguments

    family = get_family("mdlm")
    model = family.build_model(
        tokenizer, hidden_size=32, num_hidden_layers=1, num_attention_heads=2, sigma_max=5.0
    )
    collator = text_collator(family, tokenizer, 16, "blocks")
    default = collator.noise_schedule.sigma(torch.tensor([1.0]))
    args = TrainingArguments(output_dir=str(tmp_path), report_to="none", use_cpu=True)
    family.trainer_class(model=model, args=args, data_collator=collator, processing_class=tokenizer)
    sigma = collator.collator.noise_schedule.sigma(torch.tensor([1.0]))
    assert torch.allclose(sigma, model.config.get_noise_schedule().sigma(torch.tensor([1.0])))
    assert not torch.allclose(sigma, default)
