"""Embedding-space attack (Schwinn et al., "Soft prompt threats", 2024): learn a few input embeddings that,
put before the prompt, raise the likelihood of the forgotten answers, then ask questions it was not trained on.

The forget set is split by the seed (as ``relearn_disjoint`` does). ``n_tokens`` soft embeddings, started from
the embeddings of a neutral instruction, get ``steps`` Adam steps on the answer-only NLL of the train half (the
model's weights are frozen and unchanged). The held-out half is answered greedily with and without the prefix:
keyword leak and normalised answer probability before and after. Weight-backed models only; a guard is
attacked through the model under it (its intervention acts on the prompt text, which this attack bypasses).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from unlearnkit.attacks.base import Attack, AttackContext, AttackSkipped, score_generations
from unlearnkit.attacks.relearning import split_forget
from unlearnkit.models.base import weights_model
from unlearnkit.options import check_values, option

INIT_TEXT = "Answer the question with the exact facts you know."


@dataclass
class SoftPromptOptions:
    n_tokens: int = option(8, "soft prefix length", minimum=1)
    steps: int = option(20, "optimisation steps", minimum=1)
    lr: float = option(1e-2, "learning rate", minimum=0, exclusive_minimum=True)
    fraction: float = option(0.5, "share of the forget records the prefix is fitted on (the rest are asked)",
                             minimum=0, maximum=1, exclusive_minimum=True, exclusive_maximum=True)


class SoftPrompt(Attack):
    name = "soft_prompt"
    summary = "optimise a soft prefix of input embeddings on half the forget answers, ask the other half"
    Options = SoftPromptOptions

    def __init__(self, n_tokens: int = 8, steps: int = 20, lr: float = 1e-2, fraction: float = 0.5):
        check_values(SoftPromptOptions, {"n_tokens": n_tokens, "steps": steps, "lr": lr, "fraction": fraction},
                     f"attack '{self.name}'")
        self.n_tokens, self.steps, self.lr, self.fraction = int(n_tokens), int(steps), float(lr), float(fraction)

    @classmethod
    def from_context(cls, ctx: AttackContext, **options):
        return cls(**options)

    def describe(self):
        return {**super().describe(), "n_tokens": self.n_tokens, "steps": self.steps, "lr": self.lr}

    def build(self, records, seed=0):
        _, held = split_forget(records, self.fraction, seed)
        held_ids = {id(r) for r in held}
        return [r.question if id(r) in held_ids else None for r in records]

    # -- pieces --------------------------------------------------------------------------
    def _init_prefix(self, hf, embed) -> torch.Tensor:
        ids = hf.tokenizer(INIT_TEXT, add_special_tokens=False)["input_ids"] or [0]
        ids = (ids * math.ceil(self.n_tokens / len(ids)))[: self.n_tokens]
        with torch.no_grad():
            return embed(torch.tensor(ids, device=embed.weight.device)).detach().clone().float()

    @staticmethod
    def _with_prefix(embed, prefix, batch):
        tokens = embed(batch["input_ids"])
        n = prefix.shape[0]
        rows = tokens.shape[0]
        inputs = torch.cat([prefix.to(tokens.dtype).unsqueeze(0).expand(rows, -1, -1), tokens], dim=1)
        mask = torch.cat([torch.ones(rows, n, dtype=batch["attention_mask"].dtype, device=tokens.device),
                          batch["attention_mask"]], dim=1)
        labels = torch.cat([torch.full((rows, n), -100, dtype=batch["labels"].dtype, device=tokens.device),
                            batch["labels"]], dim=1)
        return inputs, mask, labels

    @staticmethod
    def _mean_nll(module, inputs, mask, labels) -> torch.Tensor:
        logits = module(inputs_embeds=inputs, attention_mask=mask).logits[:, :-1].float()
        target = labels[:, 1:]
        return torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), target.reshape(-1),
                                                 ignore_index=-100)

    def _answer_prob(self, hf, module, embed, prefix, records) -> float:
        probs = []
        with torch.no_grad():
            for r in records:
                batch = hf.encode([r.question], [r.answer])
                if prefix is None:
                    inputs, mask, labels = embed(batch["input_ids"]), batch["attention_mask"], batch["labels"]
                else:
                    inputs, mask, labels = self._with_prefix(embed, prefix, batch)
                probs.append(math.exp(-float(self._mean_nll(module, inputs, mask, labels))))
        return sum(probs) / len(probs)

    def _generate(self, hf, module, embed, prefix, records, max_new_tokens: int) -> list[str]:
        out = []
        with torch.no_grad():
            for r in records:
                ids = torch.tensor([hf.prompt_ids(r.question)], device=embed.weight.device)
                tokens = embed(ids)
                if prefix is not None:
                    tokens = torch.cat([prefix.to(tokens.dtype).unsqueeze(0), tokens], dim=1)
                mask = torch.ones(tokens.shape[:2], dtype=torch.long, device=tokens.device)
                new = module.generate(inputs_embeds=tokens, attention_mask=mask, max_new_tokens=max_new_tokens,
                                      do_sample=False, pad_token_id=hf.tokenizer.pad_token_id,
                                      eos_token_id=list(hf.eos_ids))
                out.append(hf.tokenizer.decode(new[0], skip_special_tokens=True).strip())
        return out

    def run(self, model, records, ctx):
        hf = weights_model(model)
        module = getattr(hf, "model", None)
        if not isinstance(module, torch.nn.Module) or not hasattr(hf, "encode"):
            raise AttackSkipped(f"{model.name} has no local weights: a soft prompt needs input embeddings")
        train, held = split_forget(records, self.fraction, ctx.seed)
        embed = module.get_input_embeddings()
        torch.manual_seed(ctx.seed)
        prefix = torch.nn.Parameter(self._init_prefix(hf, embed))
        flags = [p.requires_grad for p in module.parameters()]
        was_training = module.training
        losses = []
        try:
            for p in module.parameters():
                p.requires_grad_(False)
            module.eval()
            opt = torch.optim.Adam([prefix], lr=self.lr)
            batch = hf.encode([r.question for r in train], [r.answer for r in train])
            for _ in range(self.steps):
                opt.zero_grad()
                loss = self._mean_nll(module, *self._with_prefix(embed, prefix, batch))
                loss.backward()
                opt.step()
                losses.append(float(loss.detach()))
            learned = prefix.detach()
            before = self._generate(hf, module, embed, None, held, ctx.max_new_tokens)
            after = self._generate(hf, module, embed, learned, held, ctx.max_new_tokens)
            prob_before = self._answer_prob(hf, module, embed, None, held)
            prob_after = self._answer_prob(hf, module, embed, learned, held)
        finally:
            for p, flag in zip(module.parameters(), flags):
                p.requires_grad_(flag)
            module.train(was_training)
        scored_before, scored_after = score_generations(held, before), score_generations(held, after)
        per_example = [{**a, "generation_before": b["generation"], "keyword_hit_before": b["keyword_hit"]}
                       for a, b in zip(scored_after["per_example"], scored_before["per_example"])]
        return {"n": len(held), "n_train": len(train), "steps": self.steps, "n_tokens": self.n_tokens,
                "leak_rate": scored_after["leak_rate"], "rouge_l_recall": scored_after["rouge_l_recall"],
                "leak_rate_before": scored_before["leak_rate"], "answer_prob_before": prob_before,
                "answer_prob_after": prob_after, "train_loss_first": losses[0], "train_loss_last": losses[-1],
                "per_example": per_example}
