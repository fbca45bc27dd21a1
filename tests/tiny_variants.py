"""Tiny-model variants several test files need (imported as ``tiny_variants``; tests/ is on the path)."""

import torch

from unlearnkit.models.tiny import load_tiny


def tiny(mask_pad_tokens: bool = True, sharp: bool = False):
    """The tiny model; ``sharp`` redraws its matrices with a large spread so that greedy paths
    depend on every detail of attention and positions (at the default init they repeat one token)."""
    lm = load_tiny()
    lm.chat_format = lm.chat_format.with_overrides(mask_pad_tokens=mask_pad_tokens)
    if sharp:
        g = torch.Generator().manual_seed(0)
        with torch.no_grad():
            for param in lm.model.parameters():
                if param.dim() == 2:
                    param.normal_(0, 0.5, generator=g)
    return lm
