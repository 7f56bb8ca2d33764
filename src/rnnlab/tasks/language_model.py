"""Language modeling (N vs N): a unidirectional backbone -> dropout -> projection to the vocabulary,
a distribution over the next token at every step.

Loss: cross-entropy per target token (padding excluded). Metrics: ``loss`` and ``ppl``, the
exponential of the epoch's token-mean loss. Stream batches (``extras["continues"]``, see
:mod:`rnnlab.data.language_model`) start from the detached state where the previous batch of
the same stage ended: truncated backpropagation through time. ``rnnlab-predict`` continues
prompts by sampling (:meth:`LanguageModel.predict_step`).
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from rnnlab.backbones.recurrent import FinalState
from rnnlab.batch import IGNORE_INDEX, Batch
from rnnlab.data.vocab import Vocab
from rnnlab.dropout import Dropout
from rnnlab.errors import UserError
from rnnlab.tasks.base import STAGES, RecurrentTask, WeightedMean


class TokenPerplexity(WeightedMean):
    """exp(summed negative log-likelihood / target tokens) over every update since the last reset:
    the exponential of the token-mean loss (summed in float64; synced across processes as sums)."""

    def update(self, nll: torch.Tensor, tokens: int | torch.Tensor) -> None:
        """nll: the summed negative log-likelihood (natural log) of ``tokens`` target tokens."""
        self.total += nll.detach().double()
        self.weight += tokens

    def compute(self) -> torch.Tensor:
        return torch.exp(self.total / self.weight).float()


def detach_state(state: FinalState) -> FinalState:
    return tuple(part.detach() for part in state) if isinstance(state, tuple) else state.detach()


def state_rows(state: FinalState) -> int:
    """The batch size of a state h (L * D, B, H) or (h, c)."""
    return (state[0] if isinstance(state, tuple) else state).shape[1]


def check_generation_options(max_length: int, temperature: float, top_k: int) -> None:
    if isinstance(max_length, bool) or not isinstance(max_length, int) or max_length < 0:
        raise UserError(f"generation.max_length must be an integer >= 0; got {max_length!r}")
    if temperature < 0:
        raise UserError(f"generation.temperature must be >= 0 (0: greedy); got {temperature!r}")
    if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 0:
        raise UserError(f"generation.top_k must be an integer >= 0 (0: every token); got {top_k!r}")


class LanguageModel(RecurrentTask):
    """The next token at each step, over a unidirectional backbone.

    ``head_dropout``: dropout on the backbone outputs before the projection. ``tie_weights``: the
    projection shares the input embedding's weights (Press & Wolf 2017; needs
    ``embedding_dim == hidden_size``). ``data_spec`` comes from a language modeling data module
    (:mod:`rnnlab.data.language_model`): vocabulary, tokenizer and start token.
    """

    metric_modes: ClassVar[dict[str, str]] = {"loss": "min", "ppl": "min"}
    default_monitor: ClassVar[str] = "val/ppl"
    prediction_options: ClassVar[str | None] = "generation"
    data_task: ClassVar[str] = "language_modeling"
    data_choices: ClassVar[str] = "data=bbc_news_lm, brown_lm or text_lm"

    def __init__(
        self,
        data_spec: dict[str, Any],
        backbone: dict[str, Any],
        optimizer: dict[str, Any],
        scheduler: dict[str, Any] | None = None,
        head_dropout: float = 0.0,
        tie_weights: bool = False,
    ) -> None:
        self.check_data(data_spec)
        if backbone.get("bidirectional", False):
            raise UserError(
                "a language model predicts each token from the tokens before it, so its backbone must read "
                "in one direction: set model.backbone.bidirectional=false"
            )
        if not 0.0 <= head_dropout < 1.0:
            raise UserError(f"model.head_dropout must be in [0, 1); got {head_dropout}")
        super().__init__(data_spec, backbone, optimizer, scheduler)
        self.save_hyperparameters(logger=False)
        self.vocab = Vocab.from_dict(data_spec["input"]["vocab"])
        # Generated tokens are joined into text as the tokenizer split it.
        self.separator = "" if data_spec["input"]["tokenizer"] == "char" else " "
        self.dropout = Dropout(head_dropout)
        self.projection = nn.Linear(self.backbone.output_size, len(self.vocab))
        if tie_weights:
            embedding_dim = self.backbone.embedding.embedding_dim
            if embedding_dim != self.backbone.output_size:
                raise UserError(
                    "model.tie_weights=true shares the embedding with the output layer, so "
                    "model.backbone.embedding_dim must equal model.backbone.hidden_size; "
                    f"got {embedding_dim} and {self.backbone.output_size}"
                )
            self.projection.weight = self.backbone.embedding.weight
        # Never generated: <pad> and <bos> are not text, and <unk> stands for every rare word at
        # once; sampling among the real tokens renormalises over them.
        banned = torch.zeros(len(self.vocab), dtype=torch.bool)
        banned[[self.vocab.pad_id, self.vocab.bos_id, self.vocab.unk_id]] = True
        self.register_buffer("banned", banned, persistent=False)
        self.perplexity = nn.ModuleDict({f"{stage}_ppl": TokenPerplexity() for stage in STAGES})
        # stage -> the detached final state of its last stream batch (truncated BPTT).
        self._carried: dict[str, FinalState] = {}

    # -- model ---------------------------------------------------------------------------------

    def forward(
        self, inputs: torch.Tensor, lengths: torch.Tensor, initial: FinalState | None = None
    ) -> tuple[torch.Tensor, FinalState]:
        """inputs (B, T) token ids, lengths (B,), initial state or None -> next-token logits (B, T, V), final state."""
        outputs, final = self.backbone(inputs, lengths, initial=initial)
        return self.projection(self.dropout(outputs)), final

    def loss_weight(self, batch: Batch) -> torch.Tensor:
        # Every valid input step has exactly one target token.
        return batch.lengths.sum()

    @staticmethod
    def summed_nll(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """logits (B, T, V), targets (B, T) with IGNORE_INDEX at padding -> the summed negative log-likelihood."""
        return F.cross_entropy(logits.flatten(0, 1), targets.flatten(), ignore_index=IGNORE_INDEX, reduction="sum")

    def probe_loss(self, batch: Batch) -> torch.Tensor:
        logits, _ = self(batch.inputs, batch.on_host.lengths)
        return self.summed_nll(logits, batch.targets) / self.loss_weight(batch)

    def compute(self, batch: Batch, stage: str) -> torch.Tensor:
        logits, final = self(batch.inputs, batch.on_host.lengths, self._initial_state(batch, stage))
        if "continues" in batch.extras:
            self._carried[stage] = detach_state(final)
        nll = self.summed_nll(logits, batch.targets)
        tokens = self.loss_weight(batch)
        perplexity = self.perplexity[f"{stage}_ppl"]
        perplexity.update(nll, tokens)
        self.log_epoch_value(f"{stage}/ppl", perplexity)
        return nll / tokens

    def _initial_state(self, batch: Batch, stage: str) -> FinalState | None:
        """Where the previous batch of this stage's stream ended, when this batch continues it row by
        row; else None (zeros). Each pass over a stream starts with continues=False, which resets
        the state at every epoch start; a change of batch size resets it too."""
        state = self._carried.get(stage) if batch.extras.get("continues", False) else None
        if state is None or state_rows(state) != len(batch):
            return None
        return state

    # -- generation ----------------------------------------------------------------------------

    def choose(
        self, logits: torch.Tensor, temperature: float = 1.0, top_k: int = 0, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """logits (B, V) -> next token ids (B,): the most likely at temperature 0, else a sample of
        softmax(logits / temperature) over the ``top_k`` most likely tokens (0: all). Never a banned token."""
        logits = logits.masked_fill(self.banned, float("-inf"))
        if temperature == 0:
            return logits.argmax(dim=-1)
        logits = logits / temperature
        if 0 < top_k < logits.shape[-1]:
            kth = logits.topk(top_k, dim=-1).values[:, -1:]  # (B, 1)
            logits = logits.masked_fill(logits < kth, float("-inf"))
        return torch.multinomial(torch.softmax(logits, dim=-1), 1, generator=generator).squeeze(1)

    @torch.no_grad()
    def generate(
        self,
        inputs: torch.Tensor,
        lengths: torch.Tensor,
        max_length: int = 50,
        temperature: float = 1.0,
        top_k: int = 0,
        generator: torch.Generator | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Continue each prompt, all rows at once: inputs (B, T) padded prompt ids, lengths (B,) ->
        tokens (B, max_length) and counts (B,): row b's continuation is ``tokens[b, :counts[b]]``
        (it ends before its first <eos> or after max_length tokens; <pad> after it).
        """
        batch, device = inputs.shape[0], inputs.device
        pad, eos = self.vocab.pad_id, self.vocab.eos_id
        # The final state is each prompt's state at its last valid token, exact for a padded batch.
        outputs, state = self.backbone(inputs, lengths)
        last = outputs[torch.arange(batch, device=device), lengths.to(device, non_blocking=True) - 1]  # (B, D)
        logits = self.projection(self.dropout(last))  # (B, V)
        tokens = inputs.new_full((batch, max_length), pad)
        ended = torch.zeros(batch, dtype=torch.bool, device=device)
        one_step = torch.ones(batch, dtype=torch.long)  # on the CPU, where the backbone reads lengths
        for step in range(max_length):
            chosen = self.choose(logits, temperature, top_k, generator)  # (B,)
            ended |= chosen == eos
            tokens[:, step] = chosen.masked_fill(ended, pad)
            if step == max_length - 1 or bool(ended.all()):
                break
            outputs, state = self.backbone(chosen.unsqueeze(1), one_step, initial=state)
            logits = self.projection(self.dropout(outputs[:, 0]))
        return tokens, (tokens != pad).sum(dim=1)

    def predict_step(
        self,
        batch: Batch,
        batch_idx: int = 0,
        max_length: int = 50,
        temperature: float = 1.0,
        top_k: int = 0,
        seed: int = 0,
    ) -> list[dict[str, Any]]:
        """One record per prompt: its dataset ``index``, the generated ``tokens`` (without the prompt
        and the final <eos>) and their ``text`` (tokens joined by spaces; at char level, by nothing).

        ``temperature`` 0 is greedy; ``top_k`` > 0 samples among the k most likely tokens only.
        Sampling uses a torch.Generator seeded from ``seed`` and the batch's first example, so the
        same prompts file, batch size and device give the same texts; greedy texts never depend on
        the batching.
        """
        check_generation_options(max_length, temperature, top_k)
        index = batch.on_host.extras["index"]
        generator = torch.Generator(device=batch.inputs.device)
        generator.manual_seed(seed * 1_000_003 + int(index.min()))
        tokens, counts = self.generate(batch.inputs, batch.on_host.lengths, max_length, temperature, top_k, generator)
        records = []
        for example, row, count in zip(index.tolist(), tokens.tolist(), counts.tolist()):
            words = self.vocab.decode(row[:count])
            records.append({"index": example, "text": self.separator.join(words), "tokens": words})
        return records
