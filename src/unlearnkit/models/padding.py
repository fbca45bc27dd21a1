"""Right-padded batches of token-id rows: the one layout every plain forward over a batch uses."""

from __future__ import annotations

from collections.abc import Sequence

import torch


def right_pad(rows: Sequence[Sequence[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(ids, mask): ``rows`` left-aligned in a ``[len(rows), longest]`` tensor filled with ``pad_id``, and a
    mask with 1 on each row's own tokens and 0 on its padding."""
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for j, r in enumerate(rows):
        ids[j, : len(r)] = torch.tensor(list(r), dtype=torch.long)
        mask[j, : len(r)] = 1
    return ids, mask
