"""Sequence to sequence (N vs M, and 1 vs N from a feature vector): an encoder (any backbone, or
an MLP over one vector), a bridge to the decoder's initial state, and a recurrent decoder with
optional attention (:mod:`rnnlab.heads.seq2seq`), searched greedily or with a beam
(:mod:`rnnlab.heads.search`).

Training: teacher forcing (ratio schedulable per epoch; below 1 the decoder sometimes reads its own
previous prediction), cross-entropy over the target tokens and the final <eos> only, optional
label smoothing. Validation during training decodes greedily; test, ``rnnlab-eval`` and
``rnnlab-predict`` use ``search`` (beam_size, length_penalty, max length relative to the
source). Metrics on the decoded outputs
against the closest reference: ``exact_match``, ``ter`` (edit distance / reference length) and
``bleu``; the checkpoint is picked by ``val/ter``. TensorBoard gets source / reference /
prediction for a fixed set of validation examples and their attention heatmaps every epoch.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from lightning.pytorch.trainer.states import TrainerFn
from torch import nn

from rnnlab.batch import IGNORE_INDEX, Batch
from rnnlab.data.vocab import Vocab
from rnnlab.errors import UserError, check_choice, is_positive_int
from rnnlab.heads.attention import ATTENTIONS
from rnnlab.heads.search import Hypotheses, beam_search, greedy_search
from rnnlab.heads.seq2seq import Bridge, DecoderState, Memory, Seq2SeqDecoder, decoder_feature_size, top_layer
from rnnlab.tasks.base import RecurrentTask, build_backbone
from rnnlab.tasks.media import attention_figure, log_figure, log_text, markdown_table
from rnnlab.tasks.seq2seq_metrics import SequenceMetrics

BRIDGES: tuple[str, ...] = ("learned", "none")
SEARCH_DEFAULTS: dict[str, Any] = {"beam_size": 1, "length_penalty": 0.0, "max_length_ratio": 2.0, "max_length_offset": 10}
TEACHER_FORCING_DEFAULTS: dict[str, Any] = {"start": 1.0, "end": 1.0, "decay_epochs": 0}


def check_search(options: dict[str, Any], key: str = "model.search") -> dict[str, Any]:
    """The search options, each checked; unknown keys are a UserError."""
    unknown = set(options) - set(SEARCH_DEFAULTS) - {"nbest"}
    if unknown:
        raise UserError(f"{key} has no option {', '.join(sorted(unknown))}; options: {', '.join(SEARCH_DEFAULTS)}, nbest")
    beam_size = options.get("beam_size", 1)
    if not is_positive_int(beam_size):
        raise UserError(f"{key}.beam_size must be an integer >= 1; got {beam_size!r}")
    nbest = options.get("nbest")
    if nbest is not None and not (is_positive_int(nbest) and nbest <= beam_size):
        raise UserError(f"{key}.nbest must be an integer in [1, beam_size={beam_size}]; got {nbest!r}")
    if options.get("max_length_ratio", 1.0) < 0 or options.get("max_length_offset", 1) < 0:
        raise UserError(f"{key}.max_length_ratio and max_length_offset must be >= 0")
    return options


def teacher_forcing_ratio(schedule: dict[str, Any], epoch: int) -> float:
    """Linear from ``start`` at epoch 0 to ``end`` at ``decay_epochs`` (0: ``end`` from the start)."""
    if schedule["decay_epochs"] <= 0:
        return float(schedule["end"])
    progress = min(1.0, epoch / schedule["decay_epochs"])
    return float(schedule["start"] + (schedule["end"] - schedule["start"]) * progress)


class Seq2SeqTask(RecurrentTask):
    """Encoder ``backbone`` -> bridge -> ``decoder`` (a unidirectional rnn/lstm/gru config, built like
    a backbone over the target vocabulary) with ``attention`` none | dot | general | additive.

    ``input_feeding``: the previous attentional state is an input of the next step (Luong).
    ``bridge``: learned (the encoder's final state, every layer and direction, mapped to the
    decoder's initial state) or none (zeros). ``tie_embeddings``: encoder and decoder share one
    embedding (needs ``data.shared_vocab=true`` and equal embedding sizes). ``teacher_forcing``:
    ``{start, end, decay_epochs}``. ``search``: ``{beam_size, length_penalty, max_length_ratio,
    max_length_offset}``; at most ``ceil(ratio * source length + offset)`` tokens are generated.
    """

    metric_modes: ClassVar[dict[str, str]] = {"loss": "min", "exact_match": "max", "ter": "min", "bleu": "max"}
    default_monitor: ClassVar[str] = "val/ter"
    prediction_options: ClassVar[str | None] = "search"
    data_task: ClassVar[str] = "seq2seq"
    data_choices: ClassVar[str] = "data=tsv_pairs, cmudict_g2p, copy, reverse or digits_names"

    def __init__(
        self,
        data_spec: dict[str, Any],
        backbone: dict[str, Any],
        optimizer: dict[str, Any],
        decoder: dict[str, Any],
        scheduler: dict[str, Any] | None = None,
        attention: str = "general",
        input_feeding: bool = True,
        bridge: str = "learned",
        head_dropout: float = 0.0,
        label_smoothing: float = 0.0,
        tie_embeddings: bool = False,
        teacher_forcing: dict[str, Any] | None = None,
        search: dict[str, Any] | None = None,
        logged_examples: int = 4,
    ) -> None:
        self.check_data(data_spec)
        check_choice("model.attention", attention, ATTENTIONS)
        check_choice("model.bridge", bridge, BRIDGES)
        if decoder.get("bidirectional", False):
            raise UserError("the decoder generates left to right: set model.decoder.bidirectional=false")
        if not 0.0 <= head_dropout < 1.0:
            raise UserError(f"model.head_dropout must be in [0, 1); got {head_dropout}")
        if not 0.0 <= label_smoothing < 1.0:
            raise UserError(f"model.label_smoothing must be in [0, 1); got {label_smoothing}")
        schedule = {**TEACHER_FORCING_DEFAULTS, **(teacher_forcing or {})}
        if set(schedule) != set(TEACHER_FORCING_DEFAULTS) or not (
            0.0 <= schedule["start"] <= 1.0 and 0.0 <= schedule["end"] <= 1.0 and schedule["decay_epochs"] >= 0
        ):
            raise UserError(
                "model.teacher_forcing needs start and end in [0, 1] and decay_epochs >= 0 (keys: start, end, "
                f"decay_epochs); got {teacher_forcing}"
            )
        super().__init__(data_spec, backbone, optimizer, scheduler)
        self.save_hyperparameters(logger=False)
        self.teacher_forcing = schedule
        self.search = check_search({**SEARCH_DEFAULTS, **(search or {})})
        self.label_smoothing = label_smoothing
        self.logged_examples = logged_examples
        source = data_spec["input"]
        self.source_vocab = Vocab.from_dict(source["vocab"]) if source["kind"] == "tokens" else None
        self.source_separator = "" if source.get("tokenizer") == "char" else " "
        self.target_vocab = Vocab.from_dict(data_spec["target"]["vocab"])
        self.target_separator = "" if data_spec["target"]["tokenizer"] == "char" else " "

        encoder = self.backbone
        hidden = decoder.get("hidden_size", 128)
        features = decoder_feature_size(attention, input_feeding, hidden, encoder.output_size)
        decoder_rnn = build_backbone(decoder, data_spec["target"], features)
        self.bridge = Bridge(encoder.state_size, decoder_rnn.num_layers, decoder_rnn.hidden_size, decoder_rnn.cell == "lstm") if bridge == "learned" else None
        self.decoder = Seq2SeqDecoder(decoder_rnn, len(self.target_vocab), encoder.output_size, attention, input_feeding, head_dropout)
        if tie_embeddings:
            self._tie_embeddings(data_spec)
        banned = torch.zeros(len(self.target_vocab), dtype=torch.bool)
        banned[[self.target_vocab.pad_id, self.target_vocab.bos_id]] = True
        self.register_buffer("banned", banned, persistent=False)
        self.sequence_metrics = nn.ModuleDict({f"{stage}_sequences": SequenceMetrics() for stage in ("val", "test")})
        self._examples: list[dict[str, Any]] = []

    def _tie_embeddings(self, data_spec: dict[str, Any]) -> None:
        encoder_embedding, decoder_embedding = self.backbone.embedding, self.decoder.rnn.embedding
        if not data_spec.get("shared_vocab") or encoder_embedding is None:
            raise UserError("model.tie_embeddings=true needs one vocabulary for both sides: set data.shared_vocab=true")
        if encoder_embedding.embedding_dim != decoder_embedding.embedding_dim:
            raise UserError(
                "model.tie_embeddings=true needs model.backbone.embedding_dim == model.decoder.embedding_dim; "
                f"got {encoder_embedding.embedding_dim} and {decoder_embedding.embedding_dim}"
            )
        decoder_embedding.weight = encoder_embedding.weight

    # -- model ---------------------------------------------------------------------------------

    def encode(self, inputs: torch.Tensor, lengths: torch.Tensor, mask: torch.Tensor) -> tuple[Memory, DecoderState]:
        """Source (B, S) ids or (B, S, F) features, lengths (B,), mask (B, S) -> the decoder's memory and start state."""
        outputs, final = self.backbone(inputs, lengths)
        memory = self.decoder.memory(outputs, mask, top_layer(final, self.backbone.num_directions))
        return memory, self.decoder.start(self._initial(final, inputs.shape[0]), memory)

    def _initial(self, final: Any, batch: int) -> Any:
        if self.bridge is not None:
            return self.bridge(final)
        rnn = self.decoder.rnn
        zeros = torch.zeros(rnn.num_layers, batch, rnn.hidden_size, device=self.banned.device)
        return (zeros, zeros.clone()) if rnn.cell == "lstm" else zeros

    def forward(self, batch: Batch, teacher_forcing: float = 1.0) -> torch.Tensor:
        """Teacher-forced logits (B, T, V) for targets (B, T) = y_1 .. y_n <eos> padded with IGNORE_INDEX."""
        memory, state = self.encode(batch.inputs, batch.on_host.lengths, batch.mask)
        gold = batch.targets
        bos = gold.new_full((gold.shape[0], 1), self.target_vocab.bos_id)
        shifted = torch.cat([bos, gold[:, :-1]], dim=1)  # <bos> y_1 .. y_n
        previous = shifted.masked_fill(shifted == IGNORE_INDEX, self.target_vocab.pad_id)
        return self.decoder(previous, state.rnn, memory, teacher_forcing)

    def loss_weight(self, batch: Batch) -> torch.Tensor:
        # The loss is a mean over target tokens (including each <eos>).
        return (batch.targets != IGNORE_INDEX).sum()

    def loss(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """logits (B, T, V), targets (B, T) with IGNORE_INDEX at padding -> mean (label-smoothed) cross-entropy per token."""
        return F.cross_entropy(logits.flatten(0, 1), targets.flatten(), ignore_index=IGNORE_INDEX, label_smoothing=self.label_smoothing)

    def probe_loss(self, batch: Batch) -> torch.Tensor:
        return self.loss(self(batch, 1.0), batch.targets)

    def compute(self, batch: Batch, stage: str) -> torch.Tensor:
        ratio = teacher_forcing_ratio(self.teacher_forcing, self.current_epoch) if stage == "train" else 1.0
        if stage == "train":
            self.log_epoch_value("train/teacher_forcing", ratio)
        loss = self.loss(self(batch, ratio), batch.targets)
        if stage != "train":
            # Validation while fitting decodes greedily (fast, every epoch); rnnlab-eval split=val searches as configured.
            fitting = self._trainer is not None and self.trainer.state.fn == TrainerFn.FITTING
            options = {**self.search, "beam_size": 1} if stage == "val" and fitting else self.search
            hypotheses = self.decode(batch, **options)
            self.sequence_metrics[f"{stage}_sequences"].update(hypotheses.sequences(), batch.extras["references"])
            if stage == "val":
                self._keep_examples(batch, hypotheses)
        return loss

    # -- decoding ------------------------------------------------------------------------------

    def max_lengths(self, lengths: torch.Tensor, max_length_ratio: float, max_length_offset: int) -> torch.Tensor:
        """Source lengths (B,) -> the most tokens to generate per row, ceil(ratio * length + offset) >= 1, on the lengths' device."""
        return (lengths.float() * max_length_ratio + max_length_offset).ceil().long().clamp(min=1)

    @torch.no_grad()
    def decode(
        self,
        batch: Batch,
        beam_size: int = 1,
        length_penalty: float = 0.0,
        max_length_ratio: float = 2.0,
        max_length_offset: int = 10,
        nbest: int | None = None,
    ) -> Hypotheses:
        """Search every row of the batch at once: greedy for beam_size 1, else beam search."""
        memory, state = self.encode(batch.inputs, batch.on_host.lengths, batch.mask)
        limits = self.max_lengths(batch.on_host.lengths, max_length_ratio, max_length_offset)
        vocab = self.target_vocab
        if beam_size == 1:
            return greedy_search(self.decoder, memory, state, limits, vocab.bos_id, vocab.eos_id, vocab.pad_id, self.banned)
        return beam_search(
            self.decoder, memory, state, limits, vocab.bos_id, vocab.eos_id, vocab.pad_id, self.banned, beam_size, length_penalty
        )

    def configure_search(self, **options: Any) -> None:
        """Change the test-time search (rnnlab-eval's ``search.*`` overrides)."""
        self.search = check_search({**self.search, **options}, key="search")

    # -- epoch ends and TensorBoard ------------------------------------------------------------

    def on_validation_epoch_end(self) -> None:
        self._log_sequence_metrics("val")
        self._log_examples()

    def on_test_epoch_end(self) -> None:
        self._log_sequence_metrics("test")

    def _log_sequence_metrics(self, stage: str) -> None:
        metrics = self.sequence_metrics[f"{stage}_sequences"]
        if not metrics["exact_match"].update_called:
            return
        for name, value in metrics.compute().items():
            self.log(f"{stage}/{name}", value)
        metrics.reset()

    def source_text(self, row: torch.Tensor, length: int) -> list[str]:
        if self.source_vocab is None:
            return [f"<vector of {row.shape[-1]} features>"]
        return self.source_vocab.decode(row[:length].tolist())

    def _keep_examples(self, batch: Batch, hypotheses: Hypotheses) -> None:
        """Keep the validation examples with dataset index < logged_examples, for TensorBoard.
        Rows are picked on the host batch; only batches holding such an example copy hypotheses."""
        host = batch.on_host
        rows = (host.extras["index"] < self.logged_examples).nonzero().flatten().tolist()
        if not rows:
            return
        tokens, lengths = hypotheses.tokens[rows, 0].cpu(), hypotheses.lengths[rows, 0].tolist()  # (R, L), R lengths
        with_weights = hypotheses.attention is not None and self.source_vocab is not None
        attention = hypotheses.attention[rows, 0].float().cpu() if with_weights else None  # (R, L, S)
        for kept, (row, length) in enumerate(zip(rows, lengths, strict=True)):
            source_length = int(host.lengths[row])
            weights = None
            if attention is not None:
                steps = min(length + 1, attention.shape[1])  # the tokens and the step that chose <eos>
                weights = attention[kept, :steps, :source_length]
            self._examples.append(
                {
                    "index": int(host.extras["index"][row]),
                    "source": self.source_text(host.inputs[row], source_length),
                    "references": [self.target_vocab.decode(ref) for ref in host.extras["references"][row]],
                    "predicted": self.target_vocab.decode(tokens[kept, :length].tolist()),
                    "weights": weights,
                }
            )

    def _log_examples(self) -> None:
        examples, self._examples = sorted(self._examples, key=lambda e: e["index"]), []
        if self.trainer.sanity_checking or not examples:
            return
        rows = []
        for example in examples:
            predicted = self.target_separator.join(example["predicted"])
            references = [self.target_separator.join(ref) for ref in example["references"]]
            mark = "✓" if predicted in references else "✗"
            rows.append([self.source_separator.join(example["source"]), " / ".join(references), predicted, mark])
        log_text(self.loggers, "val/examples", markdown_table(["source", "reference", "prediction", ""], rows), self.global_step)
        for example in examples:
            if example["weights"] is None:
                continue
            target = example["predicted"] + ["<eos>"]
            figure = attention_figure(example["weights"], example["source"], target[: example["weights"].shape[0]])
            log_figure(self.loggers, f"val/attention/{example['index']}", figure, self.global_step)

    # -- prediction ----------------------------------------------------------------------------

    def predict_step(self, batch: Batch, batch_idx: int = 0, **search: Any) -> list[dict[str, Any]]:
        """One record per source: its dataset ``index``, the best ``prediction`` (text) and the
        ``nbest`` hypotheses with their tokens and ``score`` (length-penalised log-probability)."""
        options = check_search({**self.search, **{k: v for k, v in search.items() if v is not None}}, key="search")
        nbest = options.pop("nbest", None) or options["beam_size"]
        hypotheses = self.decode(batch, **options)
        records = []
        for row, example in enumerate(batch.extras["index"].tolist()):
            ranked = []
            for rank in range(nbest):
                score = float(hypotheses.scores[row, rank])
                if not math.isfinite(score):
                    continue  # fewer distinct hypotheses than beams (tiny vocabularies)
                tokens = self.target_vocab.decode(hypotheses.tokens[row, rank, : int(hypotheses.lengths[row, rank])].tolist())
                ranked.append({"text": self.target_separator.join(tokens), "tokens": tokens, "score": score})
            records.append({"index": example, "prediction": ranked[0]["text"], "nbest": ranked})
        return records
