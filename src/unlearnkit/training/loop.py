"""The one training loop behind fine-tuning and every weight-editing method."""

from __future__ import annotations

import copy
import json
import time
from pathlib import Path

import torch
from unlearnkit.progress import progress_bar

from unlearnkit.training.checkpoint import load_checkpoint, remove_checkpoint, save_checkpoint
from unlearnkit.training.context import TrainContext
from unlearnkit.training.sampling import step_indices


class Trainer:
    """AdamW + warm-up schedule + gradient accumulation + checkpoints, driven by a method.

    The input ``LanguageModel`` is never modified: training runs on a copy, and
    the returned model is a new ``HFLanguageModel``. ``out_dir`` receives
    ``train_log.jsonl`` and, while running, ``checkpoint/`` (resumed automatically
    unless ``resume=False``; removed once the run completes).
    """

    def __init__(self, method, lm, forget, retain, config, out_dir, resume: bool = True, copy_model: bool = True,
                 progress: str | None = None):
        from unlearnkit.models.hf import HFLanguageModel

        if not isinstance(lm, HFLanguageModel):
            raise TypeError(f"{method.name} edits weights and needs a weight-backed model, not {type(lm).__name__}")
        self.method = method
        self.source = lm
        self.forget = list(forget)
        self.retain = list(retain) if retain else None
        self.config = config.validate()
        self.out_dir = Path(out_dir)
        self.resume = resume
        self.copy_model = copy_model
        self.progress = progress or f"{method.name}"
        self.history: list[dict] = []
        self.seconds = 0.0
        self.steps_run = 0

    def _build(self):
        from accelerate import Accelerator

        from unlearnkit.models.hf import HFLanguageModel

        model = copy.deepcopy(self.source.model) if self.copy_model else self.source.model
        if self.config.lora:
            from peft import LoraConfig, get_peft_model

            lora = LoraConfig(r=self.config.lora_r, lora_alpha=self.config.lora_alpha,
                              lora_dropout=self.config.lora_dropout, target_modules="all-linear",
                              task_type="CAUSAL_LM")
            model = get_peft_model(model, lora)
        model.train()
        accelerator = Accelerator(cpu=not torch.cuda.is_available())
        lm = HFLanguageModel(model, self.source.tokenizer, name=self.source.name,
                             chat_format=self.source.chat_format, add_eos=self.source.add_eos)
        model.train()
        ctx = TrainContext(model=model, lm=lm, config=self.config, accelerator=accelerator, out_dir=self.out_dir,
                           forget_records=self.forget, retain_records=self.retain)
        return ctx

    def run(self):
        from transformers import get_scheduler

        from unlearnkit.models.hf import HFLanguageModel

        cfg = self.config
        torch.manual_seed(cfg.seed)
        ctx = self._build()
        self.method.setup(ctx)
        chosen = self.method.trainable_parameters(ctx)
        if chosen is None:
            # LoRA: the adapters peft left trainable; otherwise every weight.
            chosen = [(n, p) for n, p in ctx.model.named_parameters() if p.requires_grad or not cfg.lora]
        keep = {id(p) for _, p in chosen}
        for p in ctx.model.parameters():
            p.requires_grad_(id(p) in keep)
        if not chosen:
            raise RuntimeError(f"{self.method.name}: no trainable parameters")
        optimizer = torch.optim.AdamW([p for _, p in chosen], lr=cfg.lr, weight_decay=cfg.weight_decay)
        total = cfg.total_steps(len(self.forget))
        scheduler = get_scheduler(cfg.scheduler, optimizer, num_warmup_steps=int(cfg.warmup_ratio * total),
                                  num_training_steps=total)
        ctx.model, optimizer, scheduler = ctx.accelerator.prepare(ctx.model, optimizer, scheduler)
        fingerprint = cfg.fingerprint(self.method.describe(), len(self.forget), len(self.retain or []))
        start = load_checkpoint(self.out_dir, fingerprint, chosen, optimizer, scheduler) if self.resume else 0
        log_path = self.out_dir / "train_log.jsonl"
        self.out_dir.mkdir(parents=True, exist_ok=True)
        if start == 0 and log_path.exists():
            log_path.unlink()
        earlier = _keep_log_until(log_path, start) if start else 0.0  # steps after the checkpoint run again
        bar = progress_bar(range(start, total), desc=self.progress, hidden=False, initial=start, total=total,
                           leave=False)
        t0 = time.perf_counter()
        for step in bar:
            ctx.step = step
            micro = []
            f_idx = step_indices(len(self.forget), step, cfg.effective_batch, cfg.seed)
            r_idx = step_indices(len(self.retain), step, cfg.effective_batch, cfg.seed + 1) if self.retain else None
            for k in range(cfg.grad_accum):
                sl = slice(k * cfg.batch_size, (k + 1) * cfg.batch_size)
                fb = ctx.encode(self.forget, f_idx[sl])
                rb = ctx.encode(self.retain, r_idx[sl]) if r_idx is not None else None
                micro.append((fb, rb))
            logs = self.method.backward(ctx, micro)
            self.method.after_backward(ctx)
            if cfg.max_grad_norm is not None:
                norm = ctx.accelerator.clip_grad_norm_([p for _, p in chosen], cfg.max_grad_norm)
                ctx.check_finite(norm, "gradient norm")
                logs["grad_norm"] = float(norm)
            optimizer.step()
            self.method.after_step(ctx)
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            logs.update(step=step + 1, lr=scheduler.get_last_lr()[0],
                        elapsed=round(earlier + time.perf_counter() - t0, 3))  # training seconds, all segments
            self.history.append(logs)
            with log_path.open("a") as fh:
                fh.write(json.dumps(logs) + "\n")
            bar.set_postfix(loss=f"{logs.get('loss', float('nan')):.3f}")
            if (step + 1) % cfg.checkpoint_every == 0 and step + 1 < total:
                save_checkpoint(self.out_dir, step + 1, fingerprint, chosen, optimizer, scheduler)
        bar.close()
        self.seconds = time.perf_counter() - t0
        self.steps_run = total - start
        model = ctx.accelerator.unwrap_model(ctx.model)
        if cfg.lora:
            model = model.merge_and_unload()
        model.eval()
        for p in model.parameters():
            p.requires_grad_(False)
        remove_checkpoint(self.out_dir)
        return HFLanguageModel(model, self.source.tokenizer, name=self.source.name,
                               chat_format=self.source.chat_format, add_eos=self.source.add_eos)


def _keep_log_until(log_path, step: int) -> float:
    """Drop the log rows past ``step`` (a resumed run repeats those steps); return the training seconds
    the kept rows account for."""
    from unlearnkit.io import write_text_atomic

    if not log_path.exists():
        return 0.0
    kept = []
    for line in log_path.read_text(encoding="utf-8").splitlines():
        try:
            row = json.loads(line)
        except ValueError:
            continue  # a line cut short by the interruption
        if isinstance(row, dict) and row.get("step", 0) <= step:
            kept.append(row)
    write_text_atomic(log_path, "".join(json.dumps(r) + "\n" for r in kept))
    return float(kept[-1].get("elapsed", 0.0)) if kept else 0.0
