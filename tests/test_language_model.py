"""Language modeling: data modules (sentences, streams, splits, prompts), the task's loss, perplexity,
truncated BPTT and sampling, the configs, and one rnnlab-train / rnnlab-predict round trip."""

from __future__ import annotations

import json
import math
from pathlib import Path

import lightning as L
import pytest
import torch
import torch.nn.functional as F
from hydra import compose, initialize_config_dir

from conftest import TINY_OVERRIDES, describe, run_cli, write_lines
from rnnlab.batch import Batch
from rnnlab.cli.common import CONFIG_DIR
from rnnlab.data.bbc_news import BBCNewsDataModule
from rnnlab.data.collate import SequenceCollator
from rnnlab.data.language_model import BBCNewsLMDataModule, BrownLMDataModule, StreamBatchSampler, TextLMDataModule
from rnnlab.errors import UserError
from rnnlab.tasks.language_model import LanguageModel

#: Three sentences of different lengths, each fully determined after its first word.
TINY_TEXT = ("the cat sat on the mat", "a dog ran", "my bird sang a song in the park today")

BACKBONE = {"_target_": "rnnlab.backbones.RecurrentBackbone", "cell": "lstm", "hidden_size": 12, "embedding_dim": 8}
OPTIMIZER = {"_target_": "torch.optim.AdamW", "lr": 0.01}


def text_module(train: Path, val: Path | None = None, **options: object) -> TextLMDataModule:
    options = {"min_freq": 1, "batch_size": 4, **options}
    module = TextLMDataModule(train_file=str(train), val_file=str(val) if val else None, **options)
    module.setup("fit")
    return module


def language_model(spec: dict, backbone: dict | None = None, **options: object) -> LanguageModel:
    return LanguageModel(spec, {**BACKBONE, **(backbone or {})}, OPTIMIZER, **options)


def quiet_trainer(**options: object) -> L.Trainer:
    return L.Trainer(
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        **options,
    )


def decode(module: TextLMDataModule, ids: torch.Tensor) -> list[str]:
    return module.vocab.decode(ids.tolist())


@pytest.fixture(autouse=True)
def seeded() -> None:
    """Every model starts from the same initial weights, whatever ran before."""
    torch.manual_seed(0)


@pytest.fixture
def tiny_file(tmp_path: Path) -> Path:
    return write_lines(tmp_path / "tiny.txt", TINY_TEXT * 10)


@pytest.fixture
def tiny_module(tiny_file: Path) -> TextLMDataModule:
    return text_module(tiny_file)


# -- data: sentences -------------------------------------------------------------------------------


def test_sentence_units_read_bos_to_eos_and_cut_at_max_length(tiny_file: Path) -> None:
    module, cut = text_module(tiny_file), text_module(tiny_file, max_length=3)
    example, long_example = module.datasets["train"][1], cut.datasets["train"][0]
    assert decode(module, example["inputs"]) == ["<bos>", "a", "dog", "ran"]
    assert decode(module, example["target"]) == ["a", "dog", "ran", "<eos>"]
    assert decode(cut, long_example["inputs"]) == ["<bos>", "the", "cat"]
    assert decode(cut, long_example["target"]) == ["the", "cat", "sat"]


def test_vocabulary_comes_from_the_training_split_only(tmp_path: Path, tiny_file: Path) -> None:
    val = write_lines(tmp_path / "val.txt", ["the zebra sat", "a cat"])
    module = text_module(tiny_file, val)
    assert "zebra" not in module.vocab and "cat" in module.vocab
    assert decode(module, module.datasets["val"][0]["inputs"]) == ["<bos>", "the", "<unk>", "sat"]
    rare = write_lines(tmp_path / "rare.txt", [*TINY_TEXT * 3, "the aardvark sat"])
    assert "aardvark" not in text_module(rare, val, min_freq=2).vocab


def test_val_and_test_are_the_last_lines_of_train_file(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "lines.txt", [f"line {i}" for i in range(20)])
    module = TextLMDataModule(train_file=str(path), val_fraction=0.1, test_fraction=0.2)
    lines = {split: [int(t.text.split()[1]) for t in module.read_split(split)] for split in ("train", "val", "test")}
    assert lines == {"train": list(range(14)), "val": [14, 15], "test": [16, 17, 18, 19]}
    with pytest.raises(UserError, match="data.val_fraction=0.01 .* selects no lines"):
        TextLMDataModule(train_file=str(path), val_fraction=0.01).setup("fit")


def test_predict_prompts_start_with_the_start_token(tmp_path: Path, tiny_file: Path) -> None:
    prompts = write_lines(tmp_path / "prompts.txt", ["The cat", "", "zebra"])
    for unit, start in (("sentence", "<bos>"), ("stream", "<eos>")):
        module = text_module(tiny_file, unit=unit)
        assert module.load_predict_file(str(prompts)) == [{"prompt": "The cat"}, {"prompt": ""}, {"prompt": "zebra"}]
        encoded = [decode(module, example["inputs"]) for example in module.datasets["predict"]]
        assert encoded == [[start, "the", "cat"], [start], [start, "<unk>"]]


def test_spec_restores_tokenizer_and_vocabulary_without_refitting(tmp_path: Path, tiny_file: Path) -> None:
    module = text_module(tiny_file, tokenizer="char", lowercase=False, unit="stream")
    other = write_lines(tmp_path / "other.txt", ["Zebras Xylophone"] * 10)
    restored = text_module(other, spec=module.spec)
    assert restored.vocab == module.vocab and restored.tokenizer_name == "char" and restored.start_token == "<eos>"
    assert "Z" not in restored.vocab and restored.spec == module.spec  # unit too comes from the spec


# -- data: streams ---------------------------------------------------------------------------------


def test_stream_rows_continue_across_batches_and_no_token_is_lost(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "words.txt", [f"w{i} x{i % 3}" for i in range(40)])
    module = text_module(path, unit="stream", batch_size=5, bptt=4)
    stream = module.datasets["train"].ids  # 32 lines: <eos> + 32 * (2 words + <eos>) = 97 ids
    assert decode(module, stream[:7]) == ["<eos>", "w0", "x0", "<eos>", "w1", "x1", "<eos>"]
    batches: list[Batch] = list(module.train_dataloader())
    rows, length = 5, (len(stream) - 1) // 5  # 19 steps per row, the 1 left over is dropped
    assert [batch.inputs.shape for batch in batches] == [(5, 4)] * 4 + [(5, 3)]
    assert [batch.extras["continues"] for batch in batches] == [False, True, True, True, True]
    for batch in batches:
        assert batch.mask.all() and torch.equal(batch.targets[:, :-1], batch.inputs[:, 1:])
    for before, after in zip(batches, batches[1:]):
        assert torch.equal(after.extras["index"], before.extras["index"] + 4)  # row b goes on where it stopped
        assert torch.equal(before.targets[:, -1], after.inputs[:, 0])
    inputs = torch.cat([batch.inputs for batch in batches], dim=1)  # (rows, L): each row once, in order
    targets = torch.cat([batch.targets for batch in batches], dim=1)
    assert torch.equal(inputs.flatten(), stream[: rows * length])
    assert torch.equal(targets.flatten(), stream[1 : rows * length + 1])
    assert len(stream) - 1 - rows * length < rows


def test_stream_rows_are_sharded_across_processes() -> None:
    """100 steps, 6 rows in all (the global batch), 2 processes: the single process's 6 rows of 16
    steps, each rank its own 3 consecutive rows."""
    single = StreamBatchSampler(101, rows=6, bptt=5, num_replicas=1, rank=0)
    samplers = [StreamBatchSampler(101, rows=6, bptt=5, num_replicas=2, rank=rank) for rank in (0, 1)]
    assert [sampler.layout() for sampler in samplers] == [([0, 16, 32], 16), ([48, 64, 80], 16)]
    assert single.layout() == ([0, 16, 32, 48, 64, 80], 16)
    assert [len(sampler) for sampler in samplers] == [4, 4] == [len(single)] * 2
    for whole, first, second in zip(single, *samplers):
        assert first + second == whole
    assert list(samplers[1])[-1] == [(63, 1, True), (79, 1, True), (95, 1, True)]
    assert StreamBatchSampler(4, rows=8, bptt=5, num_replicas=1, rank=0).layout() == ([0, 1, 2], 1)


def test_stream_rows_across_processes_training_needs_divisible_rows_evaluation_does_not() -> None:
    with pytest.raises(UserError, match=r"data.batch_size=5 .* number of processes \(2\)"):
        StreamBatchSampler(101, rows=5, bptt=5, num_replicas=2, rank=0).layout()
    # Evaluation: 5 rows of 20 steps, 2 on rank 0 and 3 on rank 1, none left out.
    evaluation = [StreamBatchSampler(101, rows=5, bptt=5, num_replicas=2, rank=rank, training=False) for rank in (0, 1)]
    assert [sampler.layout() for sampler in evaluation] == [([0, 20], 20), ([40, 60, 80], 20)]
    with pytest.raises(UserError, match="data.eval_batch_size=1"):
        StreamBatchSampler(101, rows=1, bptt=5, num_replicas=2, rank=0, training=False).layout()
    # Training on a stream shorter than the rows: the largest multiple of the processes that fits.
    assert StreamBatchSampler(4, rows=8, bptt=5, num_replicas=2, rank=1).layout() == ([1], 1)


# -- data: built-in corpora ------------------------------------------------------------------------


def test_bbc_news_lm_uses_the_classifiers_document_split() -> None:
    lm, classifier = BBCNewsLMDataModule(), BBCNewsDataModule()
    for split in ("train", "val", "test"):
        lines = lm.read_split(split)
        assert {line.source.rsplit(":", 1)[0] for line in lines} == {article.source for article in classifier.read_split(split)}
    assert lines[0].text == classifier.read_split("test")[0].text.split("\n")[0]  # the title, then paragraphs


def write_brown(directory: Path) -> Path:
    """A three-document Brown corpus in NLTK's layout (brown_split deals one document to each split)."""
    directory.mkdir()
    file_ids = ("ca01", "ca02", "ca03")
    (directory / "cats.txt").write_text("".join(f"{file_id} news\n" for file_id in file_ids))
    for file_id in file_ids:
        sentences = (f"The/at jury/nn said/vbd ``/`` no/at {file_id}/nn ''/'' ./.", "It/pps ran/vbd ./.")
        (directory / file_id).write_text("".join(f"\n\n\t{sentence}" for sentence in sentences) + "\n")
    return directory


def test_brown_lm_keeps_the_corpus_tokens(tmp_path: Path) -> None:
    corpus = write_brown(tmp_path / "brown")
    module = BrownLMDataModule(corpus_dir=str(corpus), unit="sentence", batch_size=2)
    module.setup("fit")
    train, val = module.datasets["train"], module.datasets["val"]
    assert len(train) == len(val) == 2
    assert decode(module, train[0]["inputs"])[:5] == ["<bos>", "the", "jury", "said", "``"]
    prompts = write_lines(tmp_path / "prompts.txt", ["The jury ``"])
    module.load_predict_file(str(prompts))
    assert decode(module, module.datasets["predict"][0]["inputs"]) == ["<bos>", "the", "jury", "``"]
    chars = BrownLMDataModule(corpus_dir=str(corpus), tokenizer="char", lowercase=False, unit="sentence")
    chars.setup("fit")
    assert "".join(decode(chars, chars.datasets["train"][1]["inputs"])[1:]) == "It ran ."
    with pytest.raises(UserError, match="fetch_data.py brown"):
        BrownLMDataModule(corpus_dir=str(tmp_path / "missing")).setup("fit")


# -- the task --------------------------------------------------------------------------------------


def test_bidirectional_backbone_and_other_data_are_rejected(tiny_module: TextLMDataModule) -> None:
    with pytest.raises(UserError, match="model.backbone.bidirectional=false"):
        language_model(tiny_module.spec, backbone={"bidirectional": True})
    classification_spec = {**tiny_module.spec, "task": "classification"}
    with pytest.raises(UserError, match="LanguageModel needs language modeling data .data=bbc_news_lm, brown_lm or text_lm.; the data given is for classification"):
        language_model(classification_spec)


def parameter_count(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def test_tie_weights_shares_the_embedding(tiny_module: TextLMDataModule) -> None:
    square = {"hidden_size": 8, "embedding_dim": 8}
    tied = language_model(tiny_module.spec, square, tie_weights=True)
    untied = language_model(tiny_module.spec, square)
    assert tied.projection.weight is tied.backbone.embedding.weight
    assert parameter_count(untied) - parameter_count(tied) == len(tiny_module.vocab) * 8
    reloaded = language_model(tiny_module.spec, square, tie_weights=True)
    reloaded.load_state_dict(tied.state_dict())
    assert reloaded.projection.weight is reloaded.backbone.embedding.weight
    with pytest.raises(UserError, match="embedding_dim must equal model.backbone.hidden_size; got 8 and 12"):
        language_model(tiny_module.spec, tie_weights=True)


@pytest.mark.parametrize(("cell", "impl"), [("lstm", "fused"), ("gru", "reference"), ("rnn", "fused")])
def test_log_probs_do_not_depend_on_padding(tiny_module: TextLMDataModule, cell: str, impl: str) -> None:
    model = language_model(tiny_module.spec, {"cell": cell, "impl": impl, "num_layers": 2}).eval()
    examples = tiny_module.datasets["train"][:3]  # 7, 4 and 10 steps
    batch = SequenceCollator(tiny_module.pad_id)(examples)
    with torch.no_grad():
        log_probs = torch.log_softmax(model(batch.inputs, batch.lengths)[0], dim=-1)
        for row, example in enumerate(examples):
            length = len(example["inputs"])
            alone = torch.log_softmax(model(example["inputs"][None], torch.tensor([length]))[0], dim=-1)
            torch.testing.assert_close(log_probs[row, :length], alone[0], rtol=0, atol=1e-5)


def test_val_ppl_is_exp_of_the_token_mean_loss_over_the_epoch(tmp_path: Path, tiny_file: Path) -> None:
    val = write_lines(tmp_path / "val.txt", [*TINY_TEXT, "the dog", "a cat sat on the mat in the park"])
    module = text_module(tiny_file, val, batch_size=2)  # by length: batches of 3 + 4, 7 + 10 and 10 targets
    model = language_model(module.spec).eval()
    metrics = quiet_trainer().validate(model, datamodule=module, verbose=False)[0]
    nll, tokens = 0.0, 0
    with torch.no_grad():
        for example in module.datasets["val"]:
            logits = model(example["inputs"][None], torch.tensor([len(example["inputs"])]))[0][0]
            nll += F.cross_entropy(logits, example["target"], reduction="sum").item()
            tokens += len(example["target"])
    assert metrics["val/ppl"] == pytest.approx(math.exp(nll / tokens), rel=1e-5)
    assert metrics["val/ppl"] == pytest.approx(math.exp(metrics["val/loss"]), rel=1e-5)


def test_stream_evaluation_carries_the_state_from_batch_to_batch(tmp_path: Path, tiny_file: Path) -> None:
    """Chunks evaluated one after the other with the state carried give exactly the loss of each
    row read in one pass; restarting each chunk from zeros would not."""
    val = write_lines(tmp_path / "val.txt", TINY_TEXT * 2)
    module = text_module(tiny_file, val, unit="stream", batch_size=2, bptt=3)
    model = language_model(module.spec).eval()
    trainer = quiet_trainer()
    for _ in range(2):  # the second pass restarts from zeros, not from the end of the first
        metrics = trainer.validate(model, datamodule=module, verbose=False)[0]
        stream = module.datasets["val"].ids
        starts, length = StreamBatchSampler(len(stream), 2, 3).layout()
        inputs = torch.stack([stream[start : start + length] for start in starts])
        targets = torch.stack([stream[start + 1 : start + 1 + length] for start in starts])
        with torch.no_grad():
            whole_rows = F.cross_entropy(model(inputs, torch.full((2,), length))[0].flatten(0, 1), targets.flatten())
            chunks = [(inputs[:, i : i + 3], targets[:, i : i + 3]) for i in range(0, length, 3)]
            from_zeros = sum(
                F.cross_entropy(model(x, torch.full((2,), x.shape[1]))[0].flatten(0, 1), y.flatten(), reduction="sum")
                for x, y in chunks
            ) / targets.numel()
        assert metrics["val/loss"] == pytest.approx(whole_rows.item(), rel=1e-5)
        assert metrics["val/loss"] != pytest.approx(from_zeros.item(), rel=1e-4)


def test_training_carries_the_state_within_an_epoch_and_resets_it_at_the_next(tmp_path: Path, tiny_file: Path) -> None:
    """Truncated BPTT: each training batch but an epoch's first starts from the previous batch's
    detached final state; the first batch of every epoch starts from zeros."""
    module = text_module(tiny_file, unit="stream", batch_size=2, bptt=3)
    model = language_model(module.spec)
    starts: list[bool] = []
    original = model.backbone.forward

    def recording_forward(inputs, lengths, features=None, initial=None):  # type: ignore[no-untyped-def]
        if model.training:
            starts.append(initial is None)
            assert initial is None or not any(part.requires_grad for part in (initial if isinstance(initial, tuple) else (initial,)))
        return original(inputs, lengths, features, initial)

    model.backbone.forward = recording_forward  # type: ignore[method-assign]
    quiet_trainer(max_epochs=2).fit(model, datamodule=module)
    batches = len(module.train_dataloader())
    assert batches > 1 and starts == ([True] + [False] * (batches - 1)) * 2


# -- generation ------------------------------------------------------------------------------------


def prompt_batch(module: TextLMDataModule, tmp_path: Path, prompts: list[str]) -> Batch:
    module.load_predict_file(str(write_lines(tmp_path / "prompts.txt", prompts)))
    return SequenceCollator(module.pad_id)(module.datasets["predict"])


def texts(records: list[dict]) -> list[str]:
    return [record["text"] for record in sorted(records, key=lambda record: record["index"])]


def test_greedy_generation_follows_the_argmax(tiny_module: TextLMDataModule, tmp_path: Path) -> None:
    model = language_model(tiny_module.spec).eval()
    batch = prompt_batch(tiny_module, tmp_path, ["the cat"])
    greedy = model.predict_step(batch, max_length=8, temperature=0)
    ids = batch.inputs[0].tolist()
    with torch.no_grad():
        for _ in range(8):
            logits = model(torch.tensor([ids]), torch.tensor([len(ids)]))[0][0, -1]
            chosen = int(logits.masked_fill(model.banned, float("-inf")).argmax())
            if chosen == tiny_module.vocab.eos_id:
                break
            ids.append(chosen)
    assert greedy[0]["tokens"] == tiny_module.vocab.decode(ids[3:])
    assert greedy[0]["text"] == " ".join(greedy[0]["tokens"])
    assert model.predict_step(batch, max_length=8, temperature=0) == greedy
    assert model.predict_step(batch, max_length=8, temperature=0.7, top_k=1, seed=3) == greedy


def test_sampling_is_reproducible_from_its_seed(tiny_module: TextLMDataModule, tmp_path: Path) -> None:
    model = language_model(tiny_module.spec).eval()
    batch = prompt_batch(tiny_module, tmp_path, ["the", "", "a dog"])
    first = model.predict_step(batch, max_length=30, temperature=1.5, seed=1)
    assert model.predict_step(batch, max_length=30, temperature=1.5, seed=1) == first
    assert model.predict_step(batch, max_length=30, temperature=1.5, seed=2) != first
    assert all(len(record["tokens"]) <= 30 for record in first)


def test_generation_is_vectorised_over_prompts_of_different_lengths(tiny_module: TextLMDataModule, tmp_path: Path) -> None:
    model = language_model(tiny_module.spec, {"cell": "gru", "num_layers": 2}).eval()
    prompts = ["my bird sang a song", "", "the cat", "a"]
    together = texts(model.predict_step(prompt_batch(tiny_module, tmp_path, prompts), max_length=12, temperature=0))
    alone = [
        texts(model.predict_step(prompt_batch(tiny_module, tmp_path, [prompt]), max_length=12, temperature=0))[0]
        for prompt in prompts
    ]
    assert together == alone


def test_generation_stops_at_eos_or_max_length_and_skips_special_tokens(tiny_module: TextLMDataModule, tmp_path: Path) -> None:
    model = language_model(tiny_module.spec).eval()
    batch = prompt_batch(tiny_module, tmp_path, ["the", "a dog"])
    vocab = tiny_module.vocab
    with torch.no_grad():
        model.projection.weight.zero_()
        model.projection.bias.zero_()
        model.projection.bias[[vocab.pad_id, vocab.unk_id, vocab.bos_id]] = 100.0
        model.projection.bias[vocab.token_to_id("cat")] = 30.0
    assert texts(model.predict_step(batch, max_length=3, temperature=0)) == ["cat cat cat"] * 2
    assert texts(model.predict_step(batch, max_length=3, temperature=1, top_k=2)) == ["cat cat cat"] * 2
    with torch.no_grad():
        model.projection.bias[vocab.eos_id] = 40.0
    assert model.predict_step(batch, max_length=3, temperature=0)[0]["tokens"] == []
    for bad, message in (({"temperature": -1}, "generation.temperature"), ({"top_k": -2}, "generation.top_k")):
        with pytest.raises(UserError, match=message):
            model.predict_step(batch, **bad)


def test_perplexity_decreases_on_a_tiny_repetitive_text(tmp_path: Path) -> None:
    """Streamed with truncated BPTT, the repeated text becomes predictable: val/ppl drops from
    about the vocabulary size to near 1, and greedy generation completes a sentence, then stops."""
    path = write_lines(tmp_path / "repeated.txt", TINY_TEXT * 30)
    module = text_module(path, unit="stream", batch_size=4, bptt=10)
    model = LanguageModel(module.spec, {**BACKBONE, "hidden_size": 32, "embedding_dim": 16}, {**OPTIMIZER, "lr": 0.03})
    trainer = quiet_trainer(max_epochs=12, num_sanity_val_steps=0)
    initial = trainer.validate(model, datamodule=module, verbose=False)[0]["val/ppl"]
    trainer.fit(model, datamodule=module)
    final = float(trainer.callback_metrics["val/ppl"])
    assert initial > len(module.vocab) / 2 and final < 1.5, (initial, final)
    assert not model._carried["train"][0].requires_grad
    batch = prompt_batch(module, tmp_path, ["the cat sat", "a"])
    assert texts(model.eval().predict_step(batch, max_length=20, temperature=0)) == ["on the mat", "dog ran"]


# -- configs and the command line ------------------------------------------------------------------


@pytest.mark.parametrize("backbone", ["lstm", "gru", "rnn"])
def test_language_model_config_makes_every_backbone_unidirectional(backbone: str) -> None:
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose("train", overrides=["data=bbc_news_lm", "model=language_model", f"model/backbone={backbone}"])
    assert cfg.model.backbone.cell == backbone and cfg.model.backbone.bidirectional is False
    assert cfg.model._target_ == "rnnlab.tasks.LanguageModel"
    assert (cfg.data.unit, cfg.data.bptt) == ("stream", 35)


def test_train_and_predict_round_trip(tmp_path: Path) -> None:
    train = write_lines(tmp_path / "corpus.txt", TINY_TEXT * 20)
    prompts = write_lines(tmp_path / "prompts.txt", ["the cat", "", "Zebra"])
    run_dir = tmp_path / "run"
    result = run_cli(
        "train",
        "data=text_lm",
        f"data.train_file={train}",
        "model=language_model",
        "model.tie_weights=true",
        *TINY_OVERRIDES,
        "trainer.max_epochs=2",
        f"hydra.run.dir={run_dir}",
        cwd=tmp_path,
    )
    assert result.returncode == 0, describe(result)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["optimized_metric"] == "val/ppl"
    for stage in ("val", "test"):
        assert metrics[f"{stage}/ppl"] == pytest.approx(math.exp(metrics[f"{stage}/loss"]), rel=1e-4)
    result = run_cli(
        "predict",
        f"ckpt_path={run_dir / 'checkpoints/best.ckpt'}",
        f"input_file={prompts}",
        "generation.max_length=5",
        "generation.top_k=3",
        cwd=tmp_path,
    )
    assert result.returncode == 0, describe(result)
    records = [json.loads(line) for line in result.stdout.splitlines() if line.strip()]
    assert [record["prompt"] for record in records] == ["the cat", "", "Zebra"]
    for record in records:
        assert record["text"] == " ".join(record["tokens"]) and len(record["tokens"]) <= 5
        assert not {"<pad>", "<unk>", "<bos>", "<eos>"} & set(record["tokens"])
    evaluated_dir = tmp_path / "eval"
    held_out = write_lines(tmp_path / "held_out.txt", TINY_TEXT)
    result = run_cli(
        "eval", f"ckpt_path={run_dir / 'checkpoints/best.ckpt'}", f"test_file={held_out}", f"hydra.run.dir={evaluated_dir}", cwd=tmp_path
    )
    assert result.returncode == 0, describe(result)
    evaluated = json.loads((evaluated_dir / "metrics.json").read_text())
    assert evaluated["test/ppl"] == pytest.approx(math.exp(evaluated["test/loss"]), rel=1e-4)
    assert evaluated["test_file"] == str(held_out)
