"""GRIN's parameter mask: gradient-ratio scores, top-p selection, and the saved mask files.

A mask is stored as sorted flat indices per tensor (``{name: LongTensor}``): at
p = 1 % that is far smaller than a boolean copy of the model.

Files written next to a run (``save_mask``):

* ``grin_mask.pt`` — ``{"version", "p", "per_tensor", "shapes": {name: shape},
  "indices": {name: LongTensor}}`` (only tensors with at least one masked entry);
  ``load_mask`` reads it back, ``dense_masks`` turns it into boolean tensors;
* ``grin_mask.json`` — where the mask fell: totals, per tensor
  (``masked``, ``numel``, ``fraction``), per decoder layer, per module kind
  (``self_attn.q_proj``, ``mlp.down_proj``, ``embed_tokens``, ``norm`` …).
"""

from __future__ import annotations

import re
from pathlib import Path

import torch

from unlearnkit.io import write_json_atomic
from unlearnkit.methods.losses import nll

MASK_FILE = "grin_mask.pt"
SUMMARY_FILE = "grin_mask.json"
Named = list[tuple[str, torch.nn.Parameter]]


def gradient_magnitudes(ctx, records, named: Named, batch_size: int) -> list[torch.Tensor]:
    """Σ over batches of |∇θ NLL(batch)|, element-wise, in float32 (one tensor per parameter).

    Batches of ``batch_size`` cover ``records`` once, in order; the model stays in
    whatever mode it is in (the Trainer puts it in train mode). Gradients come from
    ``torch.autograd.grad``, so ``.grad`` is never touched: nothing leaks between batches.
    """
    params = [p for _, p in named]
    totals = [torch.zeros(p.shape, dtype=torch.float32, device=p.device) for p in params]
    flags = [p.requires_grad for p in params]
    try:
        for p in params:
            p.requires_grad_(True)
        with torch.enable_grad():
            for start in range(0, len(records), batch_size):
                batch = ctx.encode(records, list(range(start, min(start + batch_size, len(records)))))
                loss = nll(ctx.forward(batch).logits, batch["labels"])
                ctx.check_finite(loss, "GRIN scoring loss")
                grads = torch.autograd.grad(loss, params, allow_unused=True)
                for total, g in zip(totals, grads):
                    if g is not None:
                        total.add_(g.detach().float().abs())
    finally:
        for p, flag in zip(params, flags):
            p.requires_grad_(flag)
    return totals


def ratio_scores(g_forget: list[torch.Tensor], g_retain: list[torch.Tensor], eps: float,
                 retain_floor: float = 0.0) -> list[torch.Tensor]:
    """S = G_f / (G_r + ε'), computed in place in ``g_forget`` (which is returned).

    ε' = ε + ``retain_floor`` · mean(G_r) over every scored entry. With the paper's ε alone (1e-8), an entry
    the retain set never touches (G_r = 0: the embedding row of a token seen only in forget answers) scores
    G_f · 10⁸ and outranks every entry both sets use; a floor relative to the typical retain gradient keeps
    such entries in the race only when their forget gradient is large.
    """
    if retain_floor > 0:
        total = sum(float(r.sum(dtype=torch.float64)) for r in g_retain)
        count = sum(r.numel() for r in g_retain)
        eps = eps + retain_floor * (total / count if count else 0.0)
    for f, r in zip(g_forget, g_retain, strict=True):
        f.div_(r.add_(eps))
    return g_forget


def round_scores(scores: list[torch.Tensor], bits: int) -> list[torch.Tensor]:
    """Keep ``bits`` mantissa bits of every score, in place: scores that differ only in float rounding (another
    CPU's summation order, another thread count) become equal, and equal scores are ranked by position."""
    if bits <= 0:
        return scores
    scale = float(2 ** bits)
    for s in scores:
        mantissa, exponent = torch.frexp(s)
        s.copy_(torch.ldexp(torch.round(mantissa * scale) / scale, exponent))
    return scores


def top_count(n: int, p: float) -> int:
    """How many of ``n`` entries a top-p selection keeps: max(1, round(p·n))."""
    return max(1, min(n, round(p * n)))


def _top_indices(flat: torch.Tensor, k: int) -> torch.Tensor:
    """Sorted indices of the ``k`` largest entries; among entries equal to the k-th largest, the lowest indices
    (``topk`` alone leaves ties to the implementation, which differs between machines)."""
    threshold = torch.topk(flat, k, sorted=False).values.min()
    above = (flat > threshold).nonzero().squeeze(1)
    ties = (flat == threshold).nonzero().squeeze(1)[: k - above.numel()]
    return torch.cat([above, ties]).sort().values


def select_top(scores: list[torch.Tensor], p: float, per_tensor: bool) -> list[torch.Tensor]:
    """Sorted flat indices of the top-p fraction of scores: global (default) or within each tensor.

    Exactly ``max(1, round(p·N))`` entries are chosen (N = all entries, or each tensor's entries when
    ``per_tensor``); ties at the threshold go to the lowest positions (tensor order, then flat index).
    """
    if per_tensor:
        return [_top_indices(s.reshape(-1).cpu(), top_count(s.numel(), p)) for s in scores]
    flat = torch.cat([s.reshape(-1).cpu() for s in scores])
    chosen = _top_indices(flat, top_count(flat.numel(), p))
    del flat
    out, start = [], 0
    bounds = torch.tensor([s.numel() for s in scores]).cumsum(0).tolist()
    for end in bounds:
        lo = int(torch.searchsorted(chosen, start))
        hi = int(torch.searchsorted(chosen, end))
        out.append(chosen[lo:hi] - start)
        start = end
    return out


def _layer_and_module(name: str) -> tuple[str, str]:
    stem = re.sub(r"\.(weight|bias)$", "", name)
    m = re.search(r"layers\.(\d+)\.(.+)$", stem)
    if m:
        return m.group(1), m.group(2)
    return "none", stem.split(".")[-1]


def mask_summary(indices: dict[str, torch.Tensor], shapes: dict[str, tuple], p: float, per_tensor: bool) -> dict:
    tensors, layers, modules = {}, {}, {}
    total_numel = 0
    for name, shape in shapes.items():
        numel = int(torch.Size(shape).numel())
        total_numel += numel
        count = int(indices[name].numel()) if name in indices else 0
        tensors[name] = {"masked": count, "numel": numel, "fraction": count / numel if numel else 0.0}
        layer, module = _layer_and_module(name)
        layers[layer] = layers.get(layer, 0) + count
        modules[module] = modules.get(module, 0) + count
    total = sum(t["masked"] for t in tensors.values())
    return {"p": p, "per_tensor": per_tensor, "masked": total, "parameters": total_numel,
            "fraction": total / total_numel if total_numel else 0.0,
            "tensors_with_mask": sum(1 for t in tensors.values() if t["masked"]),
            "layers": dict(sorted(layers.items(), key=lambda kv: (kv[0] == "none", int(kv[0]) if kv[0].isdigit() else 0))),
            "modules": dict(sorted(modules.items(), key=lambda kv: -kv[1])),
            "tensors": tensors}


def save_mask(out_dir: Path, indices: dict[str, torch.Tensor], shapes: dict[str, tuple], p: float,
              per_tensor: bool) -> dict:
    """Write grin_mask.pt and grin_mask.json; returns the summary."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    kept = {n: i.cpu() for n, i in indices.items() if i.numel()}
    tmp = out_dir / f".{MASK_FILE}.tmp"
    torch.save({"version": 1, "p": p, "per_tensor": per_tensor, "shapes": {n: list(s) for n, s in shapes.items()},
                "indices": kept}, tmp)
    tmp.replace(out_dir / MASK_FILE)
    summary = mask_summary(kept, shapes, p, per_tensor)
    write_json_atomic(out_dir / SUMMARY_FILE, summary)
    return summary


def load_mask(path: str | Path) -> dict:
    """Read ``grin_mask.pt`` (a file or the run directory holding it)."""
    path = Path(path)
    if path.is_dir():
        path = path / MASK_FILE
    return torch.load(path, weights_only=True)


def dense_masks(saved: dict) -> dict[str, torch.Tensor]:
    """Boolean masks ``{name: BoolTensor(shape)}`` for every tensor the saved mask touches."""
    out = {}
    for name, idx in saved["indices"].items():
        mask = torch.zeros(torch.Size(saved["shapes"][name]).numel(), dtype=torch.bool)
        mask[idx] = True
        out[name] = mask.view(saved["shapes"][name])
    return out
