"""Prefix-tree packing: a batch of preference pairs as one sequence in which every token is computed once.

TRL feeds each pair as two full sequences (prompt + chosen, prompt + rejected), padded to the batch's
longest. Our prompts are mostly the database schema, which every problem of a database repeats, so most
of those tokens are the same work done again. Here a batch becomes a tree, laid out as one sequence:

    [shared prefix] [problem 1's rest] [chosen 1] [rejected 1] [problem 2's rest] [chosen 2] ...

The shared prefix is the token-level longest common prefix of the batch's prompts (the system prompt and
schema, where they share one; nothing, where they do not); each segment attends only to its ancestors and
to its own earlier tokens (a 4-D boolean mask through SDPA), and its position ids continue from its
parent's, so each answer token sees exactly the context it has in its own sequence. An answer segment
starts with a copy of its prompt's last token, because that token predicts the answer's first token and
the chosen and rejected answers need it to predict different ones; the segment then holds the answer
less its last token (which predicts nothing), so it scores exactly its answer's tokens. Identical answers
to the same prompt (gold code paired with several wrong samples) are computed once and counted per pair.

Nothing here exists in TRL 1.16 (its `padding_free` is disabled) or transformers (their packed-sequence
masks are block-diagonal: no shared ancestors). Scoring goes through TRL's fused LM head, which projects
only the labelled (answer) positions, in chunks, and so never holds full-vocabulary logits for a prompt.
Sequences are cut like TRL's collator cuts them (`max_length`, keeping the start), so the numbers match.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

import torch

IGNORE = -100  # the label of a position that predicts nothing (TRL's and PyTorch's convention)


@dataclass
class _Tree:
    """A packed sequence under construction: its tokens and, per segment, the parent segment."""

    input_ids: list[int] = field(default_factory=list)
    position_ids: list[int] = field(default_factory=list)
    segment_of: list[int] = field(default_factory=list)  # per token
    labels: list[int] = field(default_factory=list)  # per token: the next token of its own sequence, or IGNORE
    answer_of: list[int] = field(default_factory=list)  # per token: the answer whose log-prob it adds to, or -1
    parents: list[int] = field(default_factory=list)  # per segment: its parent, -1 for a root

    def add(self, ids: list[int], first_position: int, parent: int, labels: list[int] | None = None, answer: int = -1) -> int:
        segment = len(self.parents)
        self.parents.append(parent)
        self.input_ids += ids
        self.position_ids += range(first_position, first_position + len(ids))
        self.segment_of += [segment] * len(ids)
        self.labels += labels if labels is not None else [IGNORE] * len(ids)
        self.answer_of += [answer if labels is not None else -1] * len(ids)
        return segment

    def attention_mask(self) -> torch.Tensor:
        """(1, 1, L, L) booleans: token i sees token j when j <= i and j's segment is i's or one of its ancestors."""
        n = len(self.parents)
        sees = torch.eye(n, dtype=torch.bool)
        for segment, parent in enumerate(self.parents):  # parents come before their children
            if parent >= 0:
                sees[segment] |= sees[parent]
        segments = torch.tensor(self.segment_of, dtype=torch.long)
        causal = torch.ones(len(segments), len(segments), dtype=torch.bool).tril()
        return (causal & sees[segments][:, segments])[None, None]


def pack_pairs(examples: list[dict], max_length: int | None) -> dict[str, torch.Tensor]:
    """TRL-tokenized pairs (`prompt_ids`, `chosen_ids`, `rejected_ids`, reference log-probs) as one packed tree.

    Returns the model inputs (`input_ids`, `position_ids`, `attention_mask`, `shift_labels`) and, to read
    the answers' log-probs back: `answer_of` (per token), `answer_lengths`, and per pair `chosen_answer`,
    `rejected_answer` (an answer's index; -1 where `max_length` cuts the whole answer: log-prob 0, as in TRL).
    """
    answers: dict[tuple, int] = {}  # (prompt, answer tokens) -> answer index
    pair_answers, by_prompt = [], {}  # by_prompt: prompt -> its answers' (index, tokens), in first-seen order
    for example in examples:
        prompt = tuple(example["prompt_ids"])
        if not prompt:
            raise ValueError("a preference row with an empty prompt: the answer's first token would have no context")
        sides = []
        for side in ("chosen", "rejected"):
            room = len(example[f"{side}_ids"]) if max_length is None else max(0, max_length - len(prompt))
            answer = tuple(example[f"{side}_ids"][:room])
            if not answer:
                sides.append(-1)
                continue
            if (prompt, answer) not in answers:
                answers[(prompt, answer)] = len(answers)
                by_prompt.setdefault(prompt, []).append((answers[(prompt, answer)], answer))
            sides.append(answers[(prompt, answer)])
        pair_answers.append(sides)

    tree, answer_lengths = _Tree(), [0] * len(answers)
    trunks = [prompt[:-1] for prompt in by_prompt]  # the last prompt token starts each answer's segment
    shared = common_prefix_length(trunks)
    root = tree.add(list(trunks[0][:shared]), 0, -1) if trunks else -1
    for prompt, prompt_answers in by_prompt.items():
        rest = tree.add(list(prompt[shared:-1]), shared, root)
        for index, answer in prompt_answers:
            tree.add([prompt[-1], *answer[:-1]], len(prompt) - 1, rest, labels=list(answer), answer=index)
            answer_lengths[index] = len(answer)
    if not tree.input_ids:  # every answer cut away: one pad-like token keeps the forward pass well-formed
        tree.add([examples[0]["prompt_ids"][0]], 0, -1)

    batch = {
        "input_ids": torch.tensor([tree.input_ids]),
        "position_ids": torch.tensor([tree.position_ids]),
        "attention_mask": tree.attention_mask(),
        "shift_labels": torch.tensor([tree.labels]),
        "answer_of": torch.tensor(tree.answer_of),
        "answer_lengths": torch.tensor(answer_lengths, dtype=torch.long),
        "chosen_answer": torch.tensor([sides[0] for sides in pair_answers]),
        "rejected_answer": torch.tensor([sides[1] for sides in pair_answers]),
    }
    for key in ("ref_chosen_logps", "ref_rejected_logps", "dpo_pairs"):
        if key in examples[0]:
            batch[key] = torch.tensor([example[key] for example in examples])
    return batch


@dataclass
class PackedPreferenceCollator:
    """The data collator of the packed trainer: one packed tree per batch, so no padding at all."""

    max_length: int | None

    def __call__(self, examples: list[dict]) -> dict[str, torch.Tensor]:
        return pack_pairs(examples, self.max_length)


MODEL_INPUTS = ("input_ids", "position_ids", "attention_mask", "shift_labels")


def answer_logps(model, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Per pair, the summed token log-probs of the chosen and of the rejected answer, from one forward pass.

    `model` carries TRL's fused LM head (`add_fused_lm_head`): with `shift_labels` it scores position i
    against label i, only where a label is set, and returns log-probs per position (0 elsewhere).
    """
    outputs = model(**{key: batch[key] for key in MODEL_INPUTS}, fused_lm_head=True, use_cache=False)
    per_token = outputs.log_probs.reshape(-1)
    answer_of = batch["answer_of"]
    scored = answer_of >= 0
    sums = per_token.new_zeros(len(batch["answer_lengths"])).index_add(0, answer_of[scored], per_token[scored])
    return _per_pair(sums, batch["chosen_answer"]), _per_pair(sums, batch["rejected_answer"])


def _per_pair(values: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """values[index], with 0 where index is -1 (an answer max_length cut entirely)."""
    if len(values) == 0:
        return values.new_zeros(len(index))
    return torch.where(index >= 0, values[index.clamp(min=0)], values.new_zeros(()))


def chosen_token_count(batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Tokens of the batch's chosen answers, counted once per pair (the SFT term's denominator, as TRL counts)."""
    index = batch["chosen_answer"]
    return _per_pair(batch["answer_lengths"], index).sum()


def common_prefix_length(sequences: list[tuple]) -> int:
    if not sequences:
        return 0
    first, n = sequences[0], min(len(s) for s in sequences)
    for i in range(n):
        if any(s[i] != first[i] for s in sequences[1:]):
            return i
    return n


class PrefixGroupedSampler(torch.utils.data.Sampler):
    """An order of the pairs in which each optimizer step's pairs share as long a prompt prefix as they can.

    Pairs are sorted by prompt tokens (so the same database, then the same problem, sit together) and
    then by answer length, cut into groups of one optimizer step (`step_size` = batch size x processes x
    accumulation steps, so that the same pairs form a step however many processes share it), and the
    full groups are shuffled, seeded (the same order again on resume); a last, smaller group stays last,
    where it cannot shift the later groups off the step boundaries.
    """

    def __init__(self, prompt_ids: list[list[int]], answer_lengths: list[int], step_size: int, seed: int):
        order = sorted(range(len(prompt_ids)), key=lambda i: (prompt_ids[i], answer_lengths[i]))
        self.steps = [order[i : i + step_size] for i in range(0, len(order), step_size)]
        self.seed, self.epoch = seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return sum(len(step) for step in self.steps)

    def __iter__(self):
        full = len(self.steps) - (len(self.steps) > 0 and len(self.steps[-1]) < len(self.steps[0]))
        steps = self.steps[:full]
        random.Random(f"{self.seed}:{self.epoch}").shuffle(steps)
        steps += self.steps[full:]
        return iter([i for step in steps for i in step])
