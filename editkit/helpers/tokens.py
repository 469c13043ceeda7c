"""Tokenising prompt batches: padding on the tokenizer's side, explicit position ids, and
character-span → token-index lookups (subject's last token, target tokens).

Every text is tokenised alone (so BOS handling is the tokenizer's own) and padded here, on
``tokenizer.padding_side``. Position ids are derived from the attention mask, so a left-
padded batch gives each text the same positions as unpadded, and models get only
``input_ids``, ``attention_mask`` and ``position_ids`` (never ``token_type_ids``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import attrs
import torch


@attrs.frozen(kw_only=True)
class TokenizedText:
    ids: tuple[int, ...]
    offsets: tuple[tuple[int, int], ...] | None  # character span of each token, None if unavailable
    special: tuple[bool, ...]


def tokenize(tokenizer: Any, text: str) -> TokenizedText:
    """Tokenise one text with the tokenizer's special tokens, keeping character offsets."""
    try:
        enc = tokenizer(text, return_offsets_mapping=True, return_special_tokens_mask=True)
        offsets = tuple((int(a), int(b)) for a, b in enc["offset_mapping"])
    except (NotImplementedError, TypeError, ValueError, KeyError):  # slow tokenizers have no offsets
        enc = tokenizer(text, return_special_tokens_mask=True)
        offsets = None
    ids = tuple(int(i) for i in enc["input_ids"])
    special = tuple(bool(s) for s in enc.get("special_tokens_mask", [0] * len(ids)))
    return TokenizedText(ids=ids, offsets=offsets, special=special)


def last_token_before(tokenizer: Any, text: str, char_end: int, tok: TokenizedText | None = None) -> int:
    """Index (unpadded) of the token that holds character ``char_end - 1`` of ``text``."""
    tok = tok or tokenize(tokenizer, text)
    if tok.offsets is not None:
        index = None
        for i, ((start, _end), special) in enumerate(zip(tok.offsets, tok.special)):
            if not special and start < char_end:
                index = i
        if index is not None:
            return index
    return len(tokenize(tokenizer, text[:char_end]).ids) - 1


def first_token_from(tokenizer: Any, text: str, char_start: int, tok: TokenizedText | None = None) -> int:
    """Index (unpadded) of the first token that starts at or after character ``char_start``."""
    tok = tok or tokenize(tokenizer, text)
    if tok.offsets is not None:
        for i, ((start, end), special) in enumerate(zip(tok.offsets, tok.special)):
            if not special and end > char_start and start >= char_start - 1:
                return i
    return len(tokenize(tokenizer, text[:char_start]).ids)


@attrs.frozen(kw_only=True)
class PaddedBatch:
    """A padded batch: tensors ``[n, T]`` and, per row, the shift from unpadded to padded index."""

    input_ids: torch.Tensor = attrs.field(eq=False, repr=False)
    attention_mask: torch.Tensor = attrs.field(eq=False, repr=False)
    position_ids: torch.Tensor = attrs.field(eq=False, repr=False)
    shift: tuple[int, ...]
    lengths: tuple[int, ...]

    def model_inputs(self) -> dict[str, torch.Tensor]:
        return {"input_ids": self.input_ids, "attention_mask": self.attention_mask, "position_ids": self.position_ids}

    def index(self, row: int, unpadded: int) -> int:
        return unpadded + self.shift[row]

    def rows(self, selector: Sequence[int] | torch.Tensor) -> PaddedBatch:
        sel = torch.as_tensor(selector, dtype=torch.long)
        keep = [int(i) for i in sel]
        width = max(self.lengths[i] for i in keep)
        # re-trim to the widest kept row, on the same padding side
        if all(s == 0 for s in self.shift):
            cols = slice(0, width)
            new_shift = tuple(0 for _ in keep)
        else:
            total = self.input_ids.shape[1]
            cols = slice(total - width, total)
            new_shift = tuple(self.shift[i] - (total - width) for i in keep)
        return PaddedBatch(
            input_ids=self.input_ids[sel][:, cols],
            attention_mask=self.attention_mask[sel][:, cols],
            position_ids=self.position_ids[sel][:, cols],
            shift=new_shift,
            lengths=tuple(self.lengths[i] for i in keep),
        )


def pad_batch(tokenizer: Any, token_lists: Sequence[Sequence[int]], device: torch.device | str = "cpu") -> PaddedBatch:
    """Pad token id lists on ``tokenizer.padding_side`` (default right)."""
    if not token_lists:
        raise ValueError("cannot pad an empty batch")
    left = getattr(tokenizer, "padding_side", "right") == "left"
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else (tokenizer.eos_token_id or 0)
    width = max(len(t) for t in token_lists)
    ids = torch.full((len(token_lists), width), int(pad_id), dtype=torch.long)
    mask = torch.zeros((len(token_lists), width), dtype=torch.long)
    shift = []
    for row, tokens in enumerate(token_lists):
        n = len(tokens)
        start = width - n if left else 0
        ids[row, start : start + n] = torch.tensor(list(tokens), dtype=torch.long)
        mask[row, start : start + n] = 1
        shift.append(start)
    positions = (mask.cumsum(dim=1) - 1).clamp(min=0)
    return PaddedBatch(
        input_ids=ids.to(device),
        attention_mask=mask.to(device),
        position_ids=positions.to(device),
        shift=tuple(shift),
        lengths=tuple(len(t) for t in token_lists),
    )


def encode(tokenizer: Any, texts: Sequence[str], device: torch.device | str = "cpu") -> PaddedBatch:
    return pad_batch(tokenizer, [tokenize(tokenizer, t).ids for t in texts], device)
