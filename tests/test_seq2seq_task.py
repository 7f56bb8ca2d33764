"""The seq2seq task in process: padding never changes losses or decodes, teacher forcing and its
schedule, the search options, n-best prediction, configuration errors, and a reverse task that is
actually learned in a short CPU run."""

from __future__ import annotations

from typing import Any

import lightning as L
import pytest
import torch
import torch.nn.functional as F

from rnnlab.batch import IGNORE_INDEX, Batch
from rnnlab.data.seq2seq import ReverseDataModule
from rnnlab.errors import UserError
from rnnlab.tasks.seq2seq import Seq2SeqTask, teacher_forcing_ratio

ADAM = {"_target_": "torch.optim.Adam", "lr": 0.01}


def backbone(cell: str = "lstm", hidden: int = 16, bidirectional: bool = True, **extra: Any) -> dict[str, Any]:
    return {
        "_target_": "rnnlab.backbones.RecurrentBackbone",
        "cell": cell,
        "hidden_size": hidden,
        "embedding_dim": 8,
        "bidirectional": bidirectional,
        **extra,
    }


@pytest.fixture(scope="module")
def reverse_data() -> ReverseDataModule:
    data = ReverseDataModule(
        num_symbols=6, min_length=2, max_length=6, num_train=1500, num_val=200, num_test=200, batch_size=32, seed=0
    )
    data.setup("fit")
    data.setup("test")
    return data


def make_task(data: ReverseDataModule, **options: Any) -> Seq2SeqTask:
    torch.manual_seed(0)
    config = {
        "backbone": backbone(),
        "decoder": backbone("gru", hidden=32, bidirectional=False),
        "optimizer": ADAM,
        "head_dropout": 0.0,
        **options,
    }
    return Seq2SeqTask(data.spec, **config).eval()


def first_batch(data: ReverseDataModule, split: str = "val") -> Batch:
    return next(iter(data.dataloader(split, shuffle=False)))


def rows(batch: Batch, index: list[int]) -> Batch:
    """The examples ``index`` of a batch, re-padded to their own longest source and target."""
    source = int(batch.lengths[index].max())
    targets = batch.targets[index]
    target = int((targets != IGNORE_INDEX).sum(dim=1).max())
    return Batch(
        inputs=batch.inputs[index, :source],
        lengths=batch.lengths[index],
        mask=batch.mask[index, :source],
        targets=targets[:, :target],
        extras={"index": batch.extras["index"][index], "references": [batch.extras["references"][i] for i in index]},
    )


# -- padding ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("attention", ["none", "dot", "general", "additive"])
def test_padding_changes_neither_logits_nor_decoding(reverse_data: ReverseDataModule, attention: str) -> None:
    decoder = backbone("lstm", hidden=32, bidirectional=False)
    task = make_task(reverse_data, attention=attention, decoder=decoder)
    batch = first_batch(reverse_data)
    with torch.no_grad():
        logits = task(batch)
        greedy = task.decode(batch)
        beam = task.decode(batch, beam_size=3)
    for row in range(0, len(batch), 7):
        alone = rows(batch, [row])
        steps = alone.targets.shape[1]
        with torch.no_grad():
            torch.testing.assert_close(task(alone)[0], logits[row, :steps], atol=1e-5, rtol=1e-5)
            assert task.decode(alone).sequences() == [greedy.sequences()[row]]
            assert task.decode(alone, beam_size=3).sequences() == [beam.sequences()[row]]


def test_padded_source_values_are_ignored(reverse_data: ReverseDataModule) -> None:
    task = make_task(reverse_data, attention="additive")
    batch = first_batch(reverse_data)
    noisy = Batch(
        inputs=batch.inputs.masked_fill(~batch.mask, 5),
        lengths=batch.lengths,
        mask=batch.mask,
        targets=batch.targets,
        extras=batch.extras,
    )
    with torch.no_grad():
        torch.testing.assert_close(task(noisy), task(batch))


# -- training options ------------------------------------------------------------------------------


def test_teacher_forcing_schedule_is_linear_then_flat() -> None:
    schedule = {"start": 1.0, "end": 0.4, "decay_epochs": 3}
    assert [teacher_forcing_ratio(schedule, epoch) for epoch in range(5)] == pytest.approx([1.0, 0.8, 0.6, 0.4, 0.4])
    assert teacher_forcing_ratio({"start": 1.0, "end": 0.7, "decay_epochs": 0}, 0) == 0.7


def test_without_teacher_forcing_the_decoder_reads_its_own_predictions(reverse_data: ReverseDataModule) -> None:
    """At ratio 0 the gold tokens after the first step are never read, so changing them changes nothing."""
    task = make_task(reverse_data)
    batch = first_batch(reverse_data)
    changed = batch.targets.clone()
    valid = changed != IGNORE_INDEX
    changed[valid] = 4 + (changed[valid] + 1) % 6
    other = Batch(batch.inputs, batch.lengths, batch.mask, changed, batch.extras)
    with torch.no_grad():
        torch.testing.assert_close(task(batch, teacher_forcing=0.0), task(other, teacher_forcing=0.0))
        assert not torch.allclose(task(batch), task(other))


def test_label_smoothing_is_applied_to_the_loss(reverse_data: ReverseDataModule) -> None:
    task = make_task(reverse_data, label_smoothing=0.2)
    batch = first_batch(reverse_data, "train")
    with torch.no_grad():
        logits = task(batch)
        expected = F.cross_entropy(logits.flatten(0, 1), batch.targets.flatten(), ignore_index=IGNORE_INDEX, label_smoothing=0.2)
        plain = F.cross_entropy(logits.flatten(0, 1), batch.targets.flatten(), ignore_index=IGNORE_INDEX)
        loss = task.compute(batch, "val")
    torch.testing.assert_close(loss, expected)
    assert not torch.allclose(loss, plain)


# -- search and prediction -------------------------------------------------------------------------


def test_predict_step_gives_ranked_nbest_lists(reverse_data: ReverseDataModule) -> None:
    task = make_task(reverse_data)
    batch = first_batch(reverse_data)
    records = task.predict_step(batch, beam_size=4, nbest=3, length_penalty=0.6)
    assert [r["index"] for r in records] == batch.extras["index"].tolist()
    for record in records:
        scores = [h["score"] for h in record["nbest"]]
        assert 1 <= len(scores) <= 3 and scores == sorted(scores, reverse=True)
        assert record["prediction"] == record["nbest"][0]["text"]
        assert record["nbest"][0]["text"] == " ".join(record["nbest"][0]["tokens"])


def test_generation_respects_the_max_length_relative_to_the_source(reverse_data: ReverseDataModule) -> None:
    task = make_task(reverse_data)
    batch = first_batch(reverse_data)
    hypotheses = task.decode(batch, max_length_ratio=0.5, max_length_offset=1)
    limits = (batch.lengths.float() * 0.5 + 1).ceil().long()
    assert (hypotheses.lengths[:, 0] <= limits).all()


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"beam_size": 0}, "beam_size"),
        ({"beam_size": 2, "nbest": 3}, "nbest"),
        ({"max_length_ratio": -1.0}, "max_length_ratio"),
        ({"beams": 2}, "no option beams"),
    ],
)
def test_bad_search_options_are_user_errors(reverse_data: ReverseDataModule, options: dict[str, Any], message: str) -> None:
    task = make_task(reverse_data)
    with pytest.raises(UserError, match=message):
        task.configure_search(**options)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"attention": "luong"}, "model.attention"),
        ({"attention": "dot", "decoder": backbone("gru", hidden=20, bidirectional=False)}, "attention=dot"),
        ({"decoder": backbone("gru", hidden=32, bidirectional=True)}, "bidirectional=false"),
        ({"tie_embeddings": True}, "shared_vocab"),
        ({"teacher_forcing": {"start": 1.0, "end": 1.5, "decay_epochs": 0}}, "teacher_forcing"),
        ({"label_smoothing": 1.0}, "label_smoothing"),
        ({"bridge": "mlp"}, "model.bridge"),
    ],
)
def test_bad_model_options_are_user_errors(reverse_data: ReverseDataModule, options: dict[str, Any], message: str) -> None:
    with pytest.raises(UserError, match=message):
        make_task(reverse_data, **options)


def test_a_classification_spec_is_refused(reverse_data: ReverseDataModule) -> None:
    with pytest.raises(UserError, match="seq2seq data"):
        Seq2SeqTask({**reverse_data.spec, "task": "classification"}, backbone(), ADAM, backbone("gru", bidirectional=False))


# -- learning --------------------------------------------------------------------------------------


def test_a_small_reverse_task_is_learned(reverse_data: ReverseDataModule, tmp_path) -> None:
    """Exact match far above chance (6 symbols, lengths 2-6: chance < 1/36) after a few epochs."""
    task = make_task(reverse_data, attention="general").train()
    trainer = L.Trainer(
        max_epochs=6,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=tmp_path,
        deterministic=True,
    )
    trainer.fit(task, datamodule=reverse_data)
    metrics = trainer.test(task, datamodule=reverse_data, verbose=False)[0]
    assert metrics["test/exact_match"] > 0.6
    assert metrics["test/ter"] < 0.2
