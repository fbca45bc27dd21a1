"""Embedding-space attack (Schwinn et al., "Soft prompt threats", 2024): learn a few input embeddings that,
put before the prompt, raise the likelihood of the forgotten answers, then ask questions it was not trained on.

The forget set is split by the seed (as ``relearn_disjoint`` does). ``n_tokens`` soft embeddings, started from
the embeddings of a neutral instruction, get ``steps`` Adam steps on the answer-only NLL of the train half, on
minibatches of ``batch_size`` examples drawn in a seeded order (the model's weights are frozen and unchanged). The
held-out half is answered greedily with and without the prefix: keyword leak and normalised answer probability
before and after. Weight-backed models only; an endpoint has no embeddings and is skipped.

A guard cannot be differentiated through (its classifier decides, its agents pass text), so the prefix is learned
by gradient on the model beneath it, twice:

* **through the model beneath** (the attacker holds the weights and no guard applies): the ``base`` figures;
* **through the guard**, where it answers in one pass of that model over the prompt (``Guard.prompt_embeddings``:
  ECO's corrupted embeddings of a flagged prompt, prompting's system prompt): the prefix is fitted on, and put
  before, exactly what the guard feeds its base, and the answers before the attack come from the guard. This is
  the deployed system under an attacker who may send input embeddings, and it is the result's ``leak_rate``.
  A guard whose answer is a chain of calls (ALU) or an endpoint has nothing to put the prefix before: its result
  is the one through the model beneath (``through: base``, with ``why``).

Cost: ``steps`` forward and backward passes of ``batch_size`` examples (the budget, recorded in the result;
Schwinn et al. optimise a universal prefix the same way, by gradient steps on the target answers' likelihood),
then two greedy passes over the held-out half (without the prefix through the model's own batched generation,
with it as batched ``inputs_embeds``) and two batched scoring passes.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

import torch

from unlearnkit.attacks.base import Attack, AttackContext, AttackSkipped, score_generations
from unlearnkit.attacks.relearning import split_forget
from unlearnkit.data.records import QARecord
from unlearnkit.models.base import weights_model
from unlearnkit.options import check_values, option

INIT_TEXT = "Answer the question with the exact facts you know."
# what a guard's result keeps of the same attack through the model beneath it
BASE_KEYS = ("leak_rate", "rouge_l_recall", "leak_rate_before", "answer_prob_before", "answer_prob_after",
             "train_loss_first", "train_loss_last")


@dataclass
class SoftPromptOptions:
    n_tokens: int = option(8, "soft prefix length", minimum=1)
    steps: int = option(20, "optimisation steps", minimum=1)
    lr: float = option(1e-2, "learning rate", minimum=0, exclusive_minimum=True)
    fraction: float = option(0.5, "share of the forget records the prefix is fitted on (the rest are asked)",
                             minimum=0, maximum=1, exclusive_minimum=True, exclusive_maximum=True)
    batch_size: int = option(4, "examples per optimisation step", minimum=1)


class SoftPrompt(Attack):
    name = "soft_prompt"
    summary = "optimise a soft prefix of input embeddings on half the forget answers, ask the other half"
    Options = SoftPromptOptions
    revisions = {"guard": 2}  # 2: a guard that answers in one pass is attacked through what it feeds its base

    def __init__(self, n_tokens: int = 8, steps: int = 20, lr: float = 1e-2, fraction: float = 0.5,
                 batch_size: int = 4):
        check_values(SoftPromptOptions, {"n_tokens": n_tokens, "steps": steps, "lr": lr, "fraction": fraction,
                                         "batch_size": batch_size}, f"attack '{self.name}'")
        self.n_tokens, self.steps, self.lr, self.fraction = int(n_tokens), int(steps), float(lr), float(fraction)
        self.batch_size = int(batch_size)

    @classmethod
    def from_context(cls, ctx: AttackContext, **options):
        return cls(**options)

    def describe(self):
        return {**super().describe(), "n_tokens": self.n_tokens, "steps": self.steps, "lr": self.lr}

    def budget(self):
        return {"steps": self.steps, "train_batch_size": self.batch_size, "n_tokens": self.n_tokens, "lr": self.lr}

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
    def _token_nll(module, inputs, mask, labels) -> tuple[torch.Tensor, torch.Tensor]:
        """(per-token NLL, 1 where the token is an answer token), both rows × positions."""
        logits = module(inputs_embeds=inputs, attention_mask=mask).logits[:, :-1].float()
        target = labels[:, 1:]
        nll = torch.nn.functional.cross_entropy(logits.transpose(1, 2), target.clamp_min(0), reduction="none")
        keep = (target != -100).to(nll.dtype)
        return nll * keep, keep

    def _mean_nll(self, module, inputs, mask, labels) -> torch.Tensor:
        nll, keep = self._token_nll(module, inputs, mask, labels)
        return nll.sum() / keep.sum().clamp_min(1)

    def _answer_prob(self, hf, module, embed, prefix, records, batch_size: int, feeds=None) -> float:
        """Mean over records of exp(-mean answer-token NLL), in batches (prompts as ``feeds`` when given)."""
        probs = []
        with torch.no_grad():
            for start in range(0, len(records), batch_size):
                chunk = records[start:start + batch_size]
                if feeds is not None:
                    inputs, mask, labels = self._fed_batch(embed, prefix, feeds[start:start + batch_size],
                                                           [_answer_ids(hf, r) for r in chunk])
                else:
                    batch = hf.encode([r.question for r in chunk], [r.answer for r in chunk])
                    if prefix is None:
                        inputs, mask, labels = embed(batch["input_ids"]), batch["attention_mask"], batch["labels"]
                    else:
                        inputs, mask, labels = self._with_prefix(embed, prefix, batch)
                nll, keep = self._token_nll(module, inputs, mask, labels)
                probs += torch.exp(-nll.sum(1) / keep.sum(1).clamp_min(1)).tolist()
        return sum(probs) / len(probs)

    @staticmethod
    def _generate_with_prefix(hf, module, embed, prefix, records, max_new_tokens: int, batch_size: int,
                              feeds=None) -> list[str]:
        """Greedy answers to ``records`` with ``prefix`` before each prompt: left-padded ``inputs_embeds``. The
        prompts are embedded by ``embed``, or given as ``feeds`` (one embedding matrix per record: a guard's)."""
        out = []
        dev = embed.weight.device
        pad = hf.tokenizer.pad_token_id
        eos = set(hf.eos_ids)
        with torch.no_grad():
            pad_row = embed(torch.tensor([pad], device=dev))[0]
            for start in range(0, len(records), batch_size):
                if feeds is None:
                    prompts = [embed(torch.tensor(hf.prompt_ids(r.question), device=dev))
                               for r in records[start:start + batch_size]]
                else:
                    prompts = [f.to(dev) for f in feeds[start:start + batch_size]]
                width = max(len(p) for p in prompts)
                mask = torch.zeros((len(prompts), prefix.shape[0] + width), dtype=torch.long, device=dev)
                rows = []
                for j, prompt in enumerate(prompts):  # left padding: [pad … pad][prefix][prompt]
                    lead = width - len(prompt)
                    mask[j, lead:] = 1
                    rows.append(torch.cat([pad_row.to(prompt.dtype).expand(lead, -1), prefix.to(prompt.dtype),
                                           prompt], dim=0))
                inputs = torch.stack(rows)
                new = module.generate(inputs_embeds=inputs, attention_mask=mask, max_new_tokens=max_new_tokens,
                                      do_sample=False, temperature=None, top_p=None, top_k=None, pad_token_id=pad,
                                      eos_token_id=list(eos))
                for row in new.tolist():
                    cut = next((k for k, t in enumerate(row) if t in eos), len(row))
                    out.append(hf.decode_generation(row[:cut]))
        return out

    @staticmethod
    def _fed_batch(embed, prefix, feeds, label_ids):
        """Right-padded rows [prefix][fed prompt][answer]: (inputs_embeds, attention mask, labels on the answer)."""
        dev = embed.weight.device
        n = 0 if prefix is None else prefix.shape[0]
        rows, labels = [], []
        for feed, answer in zip(feeds, label_ids, strict=True):
            answer_emb = embed(torch.tensor(answer, dtype=torch.long, device=dev))
            parts = ([] if prefix is None else [prefix.to(answer_emb.dtype)]) + [feed.to(dev), answer_emb]
            rows.append(torch.cat(parts, dim=0))
            labels.append([-100] * (n + len(feed)) + list(answer))
        width = max(len(r) for r in rows)
        inputs = torch.zeros((len(rows), width, rows[0].shape[1]), dtype=rows[0].dtype, device=dev)
        mask = torch.zeros((len(rows), width), dtype=torch.long, device=dev)
        target = torch.full((len(rows), width), -100, dtype=torch.long, device=dev)
        for j, (row, lab) in enumerate(zip(rows, labels)):
            inputs[j, :len(row)] = row
            mask[j, :len(row)] = 1
            target[j, :len(lab)] = torch.tensor(lab, dtype=torch.long, device=dev)
        return inputs, mask, target

    def run(self, model, records, ctx):
        hf = weights_model(model)
        module = getattr(hf, "model", None)
        if not isinstance(module, torch.nn.Module) or not hasattr(hf, "encode"):
            raise AttackSkipped(f"{model.name} has no local weights: a soft prompt needs input embeddings")
        train, held = split_forget(records, self.fraction, ctx.seed)
        base = self._attack(hf, module, train, held, ctx)
        if model is hf:
            return {**base, "through": "model"}
        feed = getattr(model, "prompt_embeddings", None)
        train_feeds = feed([r.question for r in train]) if feed is not None else None
        if train_feeds is None:
            return {**base, "through": "base",
                    "why": f"{model.name} does not answer in one pass of a local model over the prompt, so an "
                           "embedding prefix cannot be put before what it feeds: attacked through the model beneath"}
        feeds = (train_feeds, feed([r.question for r in held]))
        guarded = self._attack(hf, module, train, held, ctx, feeds=feeds, answer=model)
        return {**guarded, "through": "guard", "base": {k: base[k] for k in BASE_KEYS}}

    def _attack(self, hf, module, train, held, ctx, feeds=None, answer=None) -> dict:
        """Fit the prefix on ``train``, ask ``held``. ``feeds``: (train, held) prompt embeddings as a guard feeds its
        base (the prefix goes before them; the answers before the attack come from ``answer``, the guard)."""
        embed = module.get_input_embeddings()
        torch.manual_seed(ctx.seed)
        rng = random.Random(f"soft_prompt:{ctx.seed}")
        prefix = torch.nn.Parameter(self._init_prefix(hf, embed))
        train_feeds = None if feeds is None else dict(zip(map(id, train), feeds[0], strict=True))
        held_feeds = None if feeds is None else feeds[1]
        flags = [p.requires_grad for p in module.parameters()]
        was_training = module.training
        losses = []
        try:
            for p in module.parameters():
                p.requires_grad_(False)
            module.eval()
            opt = torch.optim.Adam([prefix], lr=self.lr)
            order: list[QARecord] = []
            for _ in range(self.steps):
                if len(order) < self.batch_size:  # a fresh shuffled pass over the train half when one runs out
                    order += rng.sample(train, len(train))
                mini, order = order[:self.batch_size], order[self.batch_size:]
                opt.zero_grad()
                if train_feeds is None:
                    batch = hf.encode([r.question for r in mini], [r.answer for r in mini])
                    inputs = self._with_prefix(embed, prefix, batch)
                else:
                    inputs = self._fed_batch(embed, prefix, [train_feeds[id(r)] for r in mini],
                                             [_answer_ids(hf, r) for r in mini])
                loss = self._mean_nll(module, *inputs)
                loss.backward()
                opt.step()
                losses.append(float(loss.detach()))
            learned = prefix.detach()
            before = (answer or hf).generate([r.question for r in held], max_new_tokens=ctx.max_new_tokens,
                                             batch_size=ctx.batch_size)
            after = self._generate_with_prefix(hf, module, embed, learned, held, ctx.max_new_tokens, ctx.batch_size,
                                               feeds=held_feeds)
            prob_before = self._answer_prob(hf, module, embed, None, held, ctx.batch_size, feeds=held_feeds)
            prob_after = self._answer_prob(hf, module, embed, learned, held, ctx.batch_size, feeds=held_feeds)
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


def _answer_ids(hf, record: QARecord) -> list[int]:
    """The answer's label ids as the model is scored on them after the prompt."""
    return list(hf.pair_ids(record.question, record.answer)[1])
