"""The demo: the whole pipeline on the embedded model and the built-in benchmark.

1. generate the built-in TOFU-style benchmark (fictitious people);
2. fine-tune the target model (forget + retain) and the retain model (retain only), cached;
3. unlearn the forget people from the target with each method;
4. evaluate every model with the TOFU suite and print the comparison table
   (JSON + Markdown written to the output directory).
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from rich.console import Console

from unlearnkit.data import builtin_benchmark_dir, load_split, load_task
from unlearnkit.environment import environment
from unlearnkit.evaluation.tofu import EvalConfig
from unlearnkit.io import write_json_atomic, write_text_atomic
from unlearnkit.methods.registry import build_method
from unlearnkit.paths import cache_root
from unlearnkit.models.loading import load_model, set_chat_format
from unlearnkit.reports.table import comparison_row, markdown_table, print_table
from unlearnkit.training.config import TrainConfig
from unlearnkit.workflows.evaluate import cached_evaluate
from unlearnkit.workflows.finetune import FINETUNE_DEFAULTS, finetune
from unlearnkit.workflows.unlearn import unlearn

DEMO_METHODS = ("grad_ascent", "grad_diff", "npo", "simnpo", "blur", "grin")
# Per-method learning rates: the best of a 3-value sweep on SmolLM2 (benchmarks/weight_methods.py: highest forget
# quality keeping >= 90 % of the target's utility; ties to the lower forget keyword accuracy, then forget ROUGE).
# GRIN trains 1 % of the weights and needs a larger step; its mask is kept in the transformer blocks: with the
# embeddings in play, half of SmolLM2's mask went to token rows seen only in forget answers and forgetting stalled
# (forget ROUGE 0.95 at 3e-4, utility 0 at 1e-3; blocks only at 1e-3: ROUGE 0.76, utility kept).
DEMO_METHOD_LR = {"grad_ascent": 5e-5, "grad_diff": 5e-5, "npo": 5e-5, "simnpo": 2e-5, "blur": 5e-5, "grin": 1e-3}
DEMO_METHOD_OPTIONS = {"grin": {"skip_embeddings": "true"}}
# The target and retain models: 6 epochs at 5e-5. At 1e-4 the target learned the benchmark's answer template so
# well that it answered every real-author question in it ("Who wrote 'Romeo and Juliet'?" → "Romeo and Juliet
# wrote poetry books."): real-author ROUGE 0, so model utility 0.000. At 5e-5 (measured on SmolLM2): target
# utility 0.370, forget ROUGE 0.928; retain model utility 0.443.
DEMO_FINETUNE = replace(FINETUNE_DEFAULTS, lr=5e-5)


@dataclass
class DemoConfig:
    n_people: int = 10
    n_forget: int = 2
    n_holdout: int = 2
    facts_per_person: int = 4
    n_general: int = 12
    seed: int = 0
    methods: tuple[str, ...] = DEMO_METHODS
    unlearn: TrainConfig = field(default_factory=lambda: TrainConfig(lr=2e-5, epochs=5, batch_size=4,
                                                                     warmup_ratio=0.0))
    method_lr: dict[str, float] = field(default_factory=lambda: dict(DEMO_METHOD_LR))
    method_options: dict[str, dict[str, str]] = field(default_factory=lambda: {
        k: dict(v) for k, v in DEMO_METHOD_OPTIONS.items()})
    finetune: TrainConfig = field(default_factory=lambda: DEMO_FINETUNE)
    eval: EvalConfig = field(default_factory=lambda: EvalConfig(max_new_tokens=48))
    system_prompt: str | None = None  # None: the model's own (ChatFormat's default); "": none


EMBEDDED_SPECS = {None, "", "smollm2", "default", "embedded"}


@dataclass
class DemoModels:
    """The demo's data, target and retain models and their evaluations (cached between runs)."""

    data_dir: Path
    task: object
    cache: Path
    target: object
    retain: object | None
    target_eval: dict
    retain_eval: dict
    target_seconds: float | None  # fine-tuning time, None when it came from the cache
    retain_seconds: float | None

    @property
    def target_dir(self) -> Path:
        return self.cache / "target" / "model"


def prepare_demo_models(cfg: DemoConfig, model_spec: str | None = None, console: Console | None = None,
                        keep_retain: bool = False) -> DemoModels:
    """Steps 1-2 of the demo, shared with the benchmarks so that they all reuse one cache.

    ``model_spec``: None (or "smollm2") for the embedded default, else any ``load_model`` spec.
    ``cfg.system_prompt`` (None = the model's own) is the system prompt of every model made here.
    """
    console = console or Console()
    model_spec = None if model_spec in EMBEDDED_SPECS else str(model_spec)
    data_dir = builtin_benchmark_dir(n_people=cfg.n_people, n_forget=cfg.n_forget, n_holdout=cfg.n_holdout,
                                     facts_per_person=cfg.facts_per_person, seed=cfg.seed, n_general=cfg.n_general)
    task = load_task(data_dir)
    full = load_split(data_dir, task.splits.full)
    console.print(f"[bold]data[/bold] {data_dir}: forget {len(task.forget)}, retain {len(task.retain)}, "
                  f"holdout {len(task.holdout)} QA pairs")
    base = set_chat_format(load_model(model_spec), system_prompt=cfg.system_prompt)
    console.print(f"[bold]model[/bold] {base.name}: {base.describe().get('parameters', 0) / 1e6:.1f}M parameters")
    fmt = getattr(base, "chat_format", None)
    key = hashlib.sha256(json.dumps([str(model_spec), str(data_dir), asdict(cfg.finetune),
                                     fmt.to_json() if fmt is not None else None]).encode()).hexdigest()[:12]
    cache = cache_root() / "demo" / key
    target, target_info, target_cached = finetune(base, full, cache / "target", cfg.finetune, str(model_spec),
                                                  label="target")
    retain, retain_info, retain_cached = finetune(base, task.retain, cache / "retain", cfg.finetune, str(model_spec),
                                                  label="retain")
    del base
    retain_eval = cached_evaluate(retain, task, cache / "retain" / "eval.json", cfg.eval)
    retain_eval = cached_evaluate(retain, task, cache / "retain" / "eval.json", cfg.eval, reference=retain_eval)
    target_eval = cached_evaluate(target, task, cache / "target" / "eval.json", cfg.eval, reference=retain_eval)
    return DemoModels(data_dir, task, cache, target, retain if keep_retain else None, target_eval, retain_eval,
                      None if target_cached else target_info["seconds"],
                      None if retain_cached else retain_info["seconds"])


def run_demo(out_dir: str | Path = "runs/demo", model_spec: str | None = None, config: DemoConfig | None = None,
             console: Console | None = None) -> dict:
    cfg = config or DemoConfig()
    console = console or Console()
    out_dir = Path(out_dir)
    t_start = time.perf_counter()
    dm = prepare_demo_models(cfg, model_spec, console)
    task, target, cache, target_eval, retain_eval = dm.task, dm.target, dm.cache, dm.target_eval, dm.retain_eval
    results = {"target": target_eval, "retain": retain_eval}
    rows = [comparison_row("target (before)", target_eval["summary"], dm.target_seconds),
            comparison_row("retain (gold)", retain_eval["summary"], dm.retain_seconds)]
    runs = {}
    for name in cfg.methods:
        method = build_method(name, cfg.method_options.get(name))
        train = TrainConfig(**{**asdict(cfg.unlearn), "lr": cfg.method_lr.get(name, cfg.unlearn.lr)})
        console.print(f"[bold]unlearn[/bold] {name} (lr {train.lr})")
        model, record = unlearn(target, task, method, train, out_dir / name, model_spec=str(cache / "target" / "model"))
        result = cached_evaluate(model, task, out_dir / name / "eval.json", cfg.eval, reference=retain_eval)
        results[name] = result
        runs[name] = record
        rows.append(comparison_row(name, result["summary"], record["seconds"]))
    print_table(rows, title="unlearnkit demo: built-in benchmark, " + target.name.split("/")[-1], console=console)
    summary = {
        "data": str(dm.data_dir),
        "model": model_spec or "smollm2",
        "config": json.loads(json.dumps(asdict(cfg), default=str)),
        "rows": rows,
        "runs": runs,
        "results": {k: v["summary"] for k, v in results.items()},
        "seconds": time.perf_counter() - t_start,
        "environment": environment(),
    }
    write_json_atomic(out_dir / "results.json", summary)
    write_text_atomic(out_dir / "results.md", "# unlearnkit demo\n\n" + markdown_table(rows)
                      + f"\nTotal wall time: {summary['seconds']:.0f} s. Per-example values: `*/eval.json`.\n")
    from unlearnkit.reports.html import write_report

    masks = [out_dir / name / "grin_mask.json" for name in cfg.methods if (out_dir / name / "grin_mask.json").is_file()]
    write_report([out_dir / "results.json", *masks], out_dir / "report.html", None)
    console.print(f"results: {out_dir / 'results.json'}, {out_dir / 'results.md'}, {out_dir / 'report.html'} "
                  f"({summary['seconds']:.0f} s in all)")
    return summary
