"""The ``unlearnkit`` command line."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console

from unlearnkit.errors import UnlearnkitError

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="Make a language model forget what it must not know, verifiably, while it keeps everything else.")
console = Console()
err = Console(stderr=True, soft_wrap=True)

ModelOpt = Annotated[Optional[str], typer.Option("--model", "-m", help="model: 'smollm2' (embedded default), a HF directory, a .gguf file, or a guard/run directory")]
DataOpt = Annotated[str, typer.Option("--data", "-d", help="benchmark directory in the HF export format, or 'builtin' for the built-in benchmark")]
ForgetOpt = Annotated[Optional[str], typer.Option("--forget", help="forget split (TOFU: forget01|forget05|forget10); default from the directory's task.json")]
EvalLimitOpt = Annotated[Optional[int], typer.Option("--eval-limit", help="evaluate at most N records of each evaluation split")]
SystemPromptOpt = Annotated[Optional[str], typer.Option("--system-prompt", help="system prompt of every chat (default: the model's own, 'You are a helpful assistant.' as in OpenUnlearning's model configs; '' for none)")]
LabelsOpt = Annotated[Optional[str], typer.Option("--labels", help="which answer tokens are scored and trained: openunlearning (default: OpenUnlearning's chat preprocessing) | answer_eos (the answer and one EOS)")]
PadMaskOpt = Annotated[Optional[bool], typer.Option("--pad-mask/--no-pad-mask", help="hide tokens equal to the pad id (SmolLM2: every <|im_end|>) from attention, as OpenUnlearning's collator does (default: on, or the model's saved chat format)")]

# Training flags (TrainConfig), shared by every verb that trains; unset = the verb's own default.
LrOpt = Annotated[Optional[float], typer.Option("--lr", help="learning rate")]
EpochsOpt = Annotated[Optional[float], typer.Option("--epochs", help="passes over the training (forget) data")]
MaxStepsOpt = Annotated[Optional[int], typer.Option("--max-steps", help="optimizer steps (overrides --epochs)")]
BatchSizeOpt = Annotated[Optional[int], typer.Option("--batch-size", help="examples per micro-batch")]
GradAccumOpt = Annotated[Optional[int], typer.Option("--grad-accum", help="micro-batches per optimizer step")]
WarmupRatioOpt = Annotated[Optional[float], typer.Option("--warmup-ratio", help="share of the steps spent warming up the learning rate")]
WeightDecayOpt = Annotated[Optional[float], typer.Option("--weight-decay", help="AdamW weight decay")]
SeedOpt = Annotated[Optional[int], typer.Option("--seed", help="training seed")]
LoraOpt = Annotated[bool, typer.Option("--lora/--no-lora", help="train LoRA adapters (merged on save)")]
LoraROpt = Annotated[Optional[int], typer.Option("--lora-r", help="LoRA rank")]


def _load(spec, system_prompt=None, labels=None, pad_mask=None):
    """load_model with the chat-format overrides of the command line."""
    from unlearnkit.models import load_model
    from unlearnkit.models.loading import set_chat_format

    return set_chat_format(load_model(spec), system_prompt=system_prompt, labels=labels, mask_pad_tokens=pad_mask)


def _train_config(base, *, lora: bool, **flags):
    """``base`` with the training flags given on the command line (None = not given) laid over it."""
    from unlearnkit.training.config import TrainConfig

    values = dataclasses.asdict(base)
    values.update({key: value for key, value in flags.items() if value is not None})
    values["lora"] = lora
    return TrainConfig(**values).validate()


def _data_dir(data: str) -> Path:
    if data == "builtin":
        from unlearnkit.data import builtin_benchmark_dir
        from unlearnkit.workflows.demo import DemoConfig

        d = DemoConfig()
        return builtin_benchmark_dir(n_people=d.n_people, n_forget=d.n_forget, n_holdout=d.n_holdout,
                                     facts_per_person=d.facts_per_person, seed=d.seed, n_general=d.n_general)
    return Path(data)


def _parse_opts(opts: list[str]) -> dict[str, str]:
    from unlearnkit.errors import ConfigError

    out = {}
    for item in opts:
        key, sep, value = item.partition("=")
        if not sep:
            raise ConfigError(f"--opt expects key=value, got '{item}'")
        out[key.strip()] = value.strip()
    return out


def _run(fn):
    try:
        return fn()
    except UnlearnkitError as exc:
        err.print(f"[bold red]error:[/bold red] {exc}")
        raise typer.Exit(2) from None


@app.command()
def demo(
    out: Annotated[Path, typer.Option(help="output directory")] = Path("runs/demo"),
    model: ModelOpt = None,
    methods: Annotated[Optional[str], typer.Option(help="comma-separated methods (default: the baselines)")] = None,
    system_prompt: SystemPromptOpt = None,
):
    """Fine-tune, unlearn with each method and evaluate, on the embedded model and the built-in benchmark."""
    from unlearnkit.workflows.demo import DemoConfig, run_demo

    cfg = DemoConfig(system_prompt=system_prompt)
    if methods:
        cfg.methods = tuple(m.strip() for m in methods.split(",") if m.strip())
    _run(lambda: run_demo(out, model, cfg, console=console))


@app.command()
def tofu(
    data: Annotated[Path, typer.Option("--data", "-d", help="a TOFU copy in the Hugging Face export format (one file per configuration)")],
    out: Annotated[Path, typer.Option(help="output directory (results.json, results.md, report.html)")] = Path("runs/tofu"),
    model: ModelOpt = None,
    forget: Annotated[str, typer.Option(help="forget split: forget01 | forget05 | forget10")] = "forget01",
    layout: Annotated[str, typer.Option(help="authors: forget + retain_perturbed's 20 authors (CPU-sized); whole: all of TOFU, the published protocol")] = "authors",
    methods: Annotated[Optional[str], typer.Option(help="comma-separated methods (default: all ten)")] = None,
    lr: Annotated[list[str], typer.Option("--lr", help="METHOD=LR1,LR2: replace a method's learning-rate sweep (repeatable)")] = [],
    epochs: Annotated[Optional[float], typer.Option(help="unlearning epochs over the forget set (default 3)")] = None,
    floor: Annotated[float, typer.Option(help="share of the target's model utility a chosen setting must keep")] = 0.95,
    select_retain: Annotated[int, typer.Option(help="retain_perturbed questions in the selection suite")] = 40,
    select_general: Annotated[int, typer.Option(help="real_authors / world_facts questions in the selection suite")] = 20,
    final_subset: Annotated[Optional[int], typer.Option(help="final suite: keep N retain and N/2 general questions (default: every record)")] = None,
    attacks: Annotated[Optional[str], typer.Option(help="comma-separated attacks run on the target and every chosen model at the end (unlearnkit attack's names)")] = None,
    setting: Annotated[list[str], typer.Option("--setting", help="METHOD:lr=1e-4,gamma=0.1: add one setting to a method's sweep (lr/epochs train it, other keys are method options; repeatable)")] = [],
    attack_opt: Annotated[list[str], typer.Option("--attack-opt", help="ATTACK:key=value,...: an attack's budget or option, e.g. many_shot:max_shots=64, best_of_n:n=16, quantize:bits=[4,8] (repeatable)")] = [],
    jobs: Annotated[Optional[int], typer.Option(help="worker processes for the fine-tunes, sweep runs and evaluations (default: one per usable core; 1: all in this process)")] = None,
    threads: Annotated[int, typer.Option(help="torch threads per job (the published figures use 1)")] = 1,
):
    """TOFU end to end: fine-tune target and retain, sweep and choose each method's setting, evaluate, report."""

    def go():
        from unlearnkit.workflows.tofu import SWEEP, TofuBenchConfig, run_tofu_benchmark
        from unlearnkit.workflows.tofu_models import TofuSetup

        setup = TofuSetup(data=str(data), forget=forget, layout=layout, model=model, select_retain=select_retain,
                          select_general=select_general, final_retain=final_subset,
                          final_general=final_subset // 2 if final_subset else None)
        cfg = TofuBenchConfig(setup=setup, floor=floor,
                              attacks=tuple(a.strip() for a in (attacks or "").split(",") if a.strip()),
                              attack_options=parse_attack_options(attack_opt), jobs=jobs, threads=threads)
        if methods:
            cfg.methods = tuple(m.strip() for m in methods.split(",") if m.strip())
        if epochs is not None:
            cfg.unlearn = dataclasses.replace(cfg.unlearn, epochs=epochs)
        cfg.sweep = {**SWEEP, **parse_lr_sweep(lr, SWEEP)}
        cfg.sweep = add_settings(setting, cfg.sweep)
        return run_tofu_benchmark(cfg, out, console=console)

    _run(go)


def parse_lr_sweep(items: list[str], sweep: dict) -> dict:
    """``METHOD=LR1,LR2`` → that method's candidates with those learning rates (its options kept)."""
    from unlearnkit.errors import ConfigError

    out = {}
    for item in items:
        name, sep, values = item.partition("=")
        try:
            lrs = [float(v) for v in values.split(",") if v.strip()]
        except ValueError:
            lrs = []
        if not sep or not lrs or any(v <= 0 for v in lrs):
            raise ConfigError(f"--lr expects METHOD=LR1,LR2 with positive numbers, got '{item}'")
        options = common_options(sweep.get(name.strip(), ()))
        out[name.strip()] = tuple({"lr": v, **({"options": options} if options else {})} for v in lrs)
    return out


def parse_attack_options(items: list[str]) -> dict[str, dict]:
    """``ATTACK:key=value,key=value`` → ``{attack: {key: value}}``; a value is read as JSON when it is JSON
    (numbers, ``[4,8]``, ``true``), else kept as text."""
    import json
    import re

    from unlearnkit.errors import ConfigError

    out: dict[str, dict] = {}
    for item in items:
        name, sep, body = item.partition(":")
        pairs = [p.partition("=") for p in re.split(r",(?=\s*\w+\s*=)", body) if p.strip()]
        if not sep or not name.strip() or not pairs or any(not eq or not k.strip() or not v.strip()
                                                           for k, eq, v in pairs):
            raise ConfigError(f"--attack-opt expects ATTACK:key=value,... (e.g. many_shot:max_shots=64), got '{item}'")
        opts = out.setdefault(name.strip().lower().replace("-", "_"), {})
        for key, _, value in pairs:
            try:
                opts[key.strip()] = json.loads(value.strip())
            except ValueError:
                opts[key.strip()] = value.strip()
    return out


def common_options(candidates) -> dict:
    """The options every candidate of a method's sweep sets alike (RMU's adaptive scale, GRIN's embeddings rule);
    what only one candidate varies (a BLUR γ) is not carried over to new settings."""
    shared: dict | None = None
    for cand in candidates:
        opts = dict(cand.get("options") or {})
        shared = opts if shared is None else {k: v for k, v in shared.items() if opts.get(k) == v}
    return shared or {}


def add_settings(items: list[str], sweep: dict) -> dict:
    """``METHOD:lr=1e-4,gamma=0.1`` → one more candidate for METHOD: ``lr``/``epochs`` set its training, the
    other keys are method options layered over the options the method's sweep already uses."""
    from unlearnkit.errors import ConfigError

    out = {k: tuple(v) for k, v in sweep.items()}
    for item in items:
        name, sep, body = item.partition(":")
        name = name.strip()
        pairs = [p.partition("=") for p in body.split(",") if p.strip()]
        if not sep or not name or not pairs or any(not eq or not k.strip() or not v.strip() for k, eq, v in pairs):
            raise ConfigError(f"--setting expects METHOD:key=value,... (e.g. blur:lr=1e-4,gamma=0.1), got '{item}'")
        base = common_options(out.get(name, ()))
        cand: dict = {"options": dict(base)}
        for key, _, value in pairs:
            key, value = key.strip(), value.strip()
            if key in ("lr", "epochs"):
                try:
                    number = float(value)
                except ValueError:
                    number = -1.0
                if number <= 0:
                    raise ConfigError(f"--setting {name}: {key} must be a positive number, got '{value}'")
                cand[key] = number
            else:
                cand["options"][key] = value
        if not cand["options"]:
            del cand["options"]
        out[name] = (*out.get(name, ()), cand)
    return out


@app.command()
def finetune(
    out: Annotated[Path, typer.Option(help="output directory (model in OUT/model)")],
    model: ModelOpt = None,
    data: DataOpt = "builtin",
    split: Annotated[Optional[str], typer.Option(help="split to train on (default: the task's full split)")] = None,
    lr: LrOpt = None, epochs: EpochsOpt = None, max_steps: MaxStepsOpt = None, batch_size: BatchSizeOpt = None,
    grad_accum: GradAccumOpt = None, warmup_ratio: WarmupRatioOpt = None, weight_decay: WeightDecayOpt = None,
    seed: SeedOpt = None, lora: LoraOpt = False, lora_r: LoraROpt = None,
    force: Annotated[bool, typer.Option(help="retrain even when a cached result matches")] = False,
    system_prompt: SystemPromptOpt = None,
    labels: LabelsOpt = None,
    pad_mask: PadMaskOpt = None,
):
    """Fine-tune a model on a split: make the target (full) or retain (retain split) model."""

    def go():
        from unlearnkit.data import TaskSplits, load_split
        from unlearnkit.workflows.finetune import FINETUNE_DEFAULTS
        from unlearnkit.workflows.finetune import finetune as do_finetune

        root = _data_dir(data)
        name = split or TaskSplits.from_dir(root).full
        records = load_split(root, name)
        cfg = _train_config(FINETUNE_DEFAULTS, lr=lr, epochs=epochs, max_steps=max_steps, batch_size=batch_size,
                            grad_accum=grad_accum, warmup_ratio=warmup_ratio, weight_decay=weight_decay, seed=seed,
                            lora=lora, lora_r=lora_r)
        lm = _load(model, system_prompt, labels, pad_mask)
        _, info, cached = do_finetune(lm, records, out, cfg, base_spec=str(model), label=name, force=force)
        console.print(f"{'cached' if cached else 'trained'}: {out / 'model'} ({info['seconds']:.0f} s to train)")

    _run(go)


@app.command()
def unlearn(
    method: Annotated[str, typer.Option("--method", help="method name (see 'unlearnkit methods')")],
    out: Annotated[Path, typer.Option(help="output directory (model in OUT/model, or a guard in OUT)")],
    model: ModelOpt = None,
    data: DataOpt = "builtin",
    forget: ForgetOpt = None,
    retain: Annotated[Optional[str], typer.Option(help="retain split (default from the task)")] = None,
    opt: Annotated[Optional[list[str]], typer.Option("--opt", help="method option key=value (repeatable)")] = None,
    lr: LrOpt = None, epochs: EpochsOpt = None, max_steps: MaxStepsOpt = None, batch_size: BatchSizeOpt = None,
    grad_accum: GradAccumOpt = None, warmup_ratio: WarmupRatioOpt = None, weight_decay: WeightDecayOpt = None,
    seed: SeedOpt = None, lora: LoraOpt = False, lora_r: LoraROpt = None,
    resume: Annotated[bool, typer.Option(help="continue from OUT/checkpoint when present")] = True,
    system_prompt: SystemPromptOpt = None,
    labels: LabelsOpt = None,
    pad_mask: PadMaskOpt = None,
):
    """Unlearn the forget split from a model with one method."""

    def go():
        from unlearnkit.data import load_task
        from unlearnkit.methods.registry import build_method
        from unlearnkit.training.config import TrainConfig
        from unlearnkit.training.checkpoint import remove_checkpoint
        from unlearnkit.workflows.unlearn import unlearn as do_unlearn

        m = build_method(method, _parse_opts(opt or []))
        cfg = _train_config(TrainConfig(), lr=lr, epochs=epochs, max_steps=max_steps, batch_size=batch_size,
                            grad_accum=grad_accum, warmup_ratio=warmup_ratio, weight_decay=weight_decay, seed=seed,
                            lora=lora, lora_r=lora_r)
        task = load_task(_data_dir(data), forget=forget, retain=retain)
        if not resume:
            remove_checkpoint(out)
        lm = _load(model, system_prompt, labels, pad_mask)
        try:
            _, record = do_unlearn(lm, task, m, cfg, out, model_spec=model or "smollm2")
        except KeyboardInterrupt:
            _say_how_to_resume(out)
            raise typer.Exit(130) from None
        console.print(f"{m.name}: {record['output']} ({record['seconds']:.0f} s, {record['steps']} steps)")

    _run(go)


def _say_how_to_resume(out: Path) -> None:
    from unlearnkit.training.checkpoint import CHECKPOINT, checkpoint_step

    step = checkpoint_step(out)
    if step:
        err.print(f"interrupted: the checkpoint at step {step} is kept in {out / CHECKPOINT}; run the same command "
                  "again to resume from it (or add --no-resume to start over)")
    else:
        err.print("interrupted before the first checkpoint: running the same command again starts over")


@app.command("eval")
def evaluate(
    out: Annotated[Path, typer.Option(help="result JSON file")],
    model: ModelOpt = None,
    data: DataOpt = "builtin",
    forget: ForgetOpt = None,
    reference: Annotated[Optional[Path], typer.Option(help="the retain model's result JSON (for forget quality and privleak)")] = None,
    eval_limit: EvalLimitOpt = None,
    max_new_tokens: Annotated[int, typer.Option(help="generation length for ROUGE")] = 200,
    batch_size: Annotated[int, typer.Option(help="answers per scoring forward")] = 32,
    gen_batch_size: Annotated[int, typer.Option(help="generation slots (continuous batching)")] = 64,
    no_generate: Annotated[bool, typer.Option("--no-generate", help="skip generation (no ROUGE / keyword metrics)")] = False,
    compat: Annotated[str, typer.Option(help="metric definitions: openunlearning (default, as OpenUnlearning computes them) | unlearnkit (every label token; ES 0 without a match)")] = "openunlearning",
    system_prompt: SystemPromptOpt = None,
    labels: LabelsOpt = None,
    pad_mask: PadMaskOpt = None,
    suite: Annotated[str, typer.Option(help="evaluation suite: tofu | wmdp | mmlu | muse | wpu | pku")] = "tofu",
    opt: Annotated[Optional[list[str]], typer.Option("--opt", help="suite option key=value (see `unlearnkit suites`)")] = None,
):
    """Evaluate a model, run directory or guard with a suite (TOFU by default); write JSON and print a summary."""

    if suite.lower() != "tofu" or opt:
        return _run(lambda: _eval_suite(suite, out, model, data, opt or [], batch_size, eval_limit, system_prompt,
                                        labels, pad_mask))

    def go():
        from unlearnkit.data import load_task
        from unlearnkit.evaluation.tofu import EvalConfig, evaluate_tofu
        from unlearnkit.io import check_writable, read_result, write_json_atomic
        from unlearnkit.reports.summary import print_summary

        check_writable(out, "--out file")  # before the evaluation, not after
        task = load_task(_data_dir(data), forget=forget, eval_limit=eval_limit)
        ref = read_result(reference, "reference") if reference else None  # before the evaluation, not after
        lm = _load(model, system_prompt, labels, pad_mask)
        cfg = EvalConfig(max_new_tokens=max_new_tokens, batch_size=batch_size, gen_batch_size=gen_batch_size,
                         generate=not no_generate, compat=compat)
        result = evaluate_tofu(lm, task, reference=ref, config=cfg)
        write_json_atomic(out, result)
        print_summary(result, console)
        console.print(f"written: {out}")

    _run(go)


def _eval_suite(suite, out, model, data, opts, batch_size, limit, system_prompt=None, labels=None, pad_mask=None):
    from unlearnkit.errors import ConfigError
    from unlearnkit.evaluation.suites.registry import run_suite, suite_options
    from unlearnkit.io import check_writable, write_json_atomic
    from unlearnkit.models import load_model

    check_writable(out, "--out file")
    options: dict = _parse_opts(opts)  # strings: each suite reads them by its options' types
    allowed = suite_options(suite)
    if "batch_size" in allowed:
        options.setdefault("batch_size", batch_size)
    key = "eval_limit" if "eval_limit" in allowed else "limit"
    if limit is not None and key in allowed:
        options.setdefault(key, limit)
    if data == "builtin" and suite.lower() != "tofu":
        raise ConfigError(f"suite '{suite}' needs --data PATH (a directory in the Hugging Face export format)")
    data_path = _data_dir(data) if suite.lower() == "tofu" else Path(data)
    lm = _load(model, system_prompt, labels, pad_mask)
    result = run_suite(suite, lm, data_path, **options)
    write_json_atomic(out, result)
    rows = [{"metric": k, "value": v} for k, v in result.get("summary", {}).items()
            if isinstance(v, (int, float, str)) or v is None]
    _print_rows(rows, f"{suite}: {model or 'smollm2'}")
    console.print(f"written: {out}")


def _print_options(options_cls: type, prefix: str = "") -> None:
    """Each option: ``--opt name=default``, its type, what values it takes and its help (methods, suites, attacks)."""
    from rich.markup import escape

    from unlearnkit.options import option_rows

    for row in option_rows(options_cls):
        kind = row["type"] + (f"; {row['allowed']}" if row["allowed"] else "")
        console.print(escape(f"    --opt {prefix}{row['name']}={row['default']}  ({kind})  {row['help']}"))


@app.command()
def suites():
    """List the evaluation suites and their options."""
    from unlearnkit.evaluation.suites.registry import suite_names, suite_options_class, suite_summary

    for name in suite_names():
        console.print(f"[bold]{name}[/bold]: {suite_summary(name)}")
        _print_options(suite_options_class(name))


@app.command()
def ask(
    query: Annotated[str, typer.Argument(help="the question to answer")],
    model: ModelOpt = None,
    max_new_tokens: Annotated[int, typer.Option(help="answer length")] = 200,
    trace: Annotated[bool, typer.Option("--trace/--no-trace", help="show what each ALU agent did (names targets: operators only)")] = True,
):
    """Answer one query through a model or guard; for an ALU guard, show what each agent did."""

    def go():
        from unlearnkit.methods.alu import ask as ask_guard
        from unlearnkit.models import load_model

        lm = load_model(model)
        answer, tr = ask_guard(lm, query, max_new_tokens=max_new_tokens)
        if tr is not None and trace:
            _print_trace(tr)
        console.print(f"[bold]answer:[/bold] {answer}")

    _run(go)


def _print_trace(tr) -> None:
    from rich.table import Table

    console.print(f"[bold]path:[/bold] {tr.path}   [bold]retrieved:[/bold] "
                  f"{', '.join(str(r.get('name', r)) for r in tr.retrieved) or '-'}   [bold]verdict:[/bold] {tr.verdict}")
    for i, cand in enumerate(tr.candidates):
        rating = tr.ratings[i] if i < len(tr.ratings) else None
        mark = "kept" if i in tr.kept else ""
        console.print(f"  candidate {i + 1} (rating {rating}) {mark}: {cand[:200]}")
    if tr.leaked_terms:
        console.print(f"  leaked terms caught: {', '.join(tr.leaked_terms)}")
    table = Table(title=f"LLM calls: {tr.llm_calls}, tokens: {tr.tokens}, {tr.seconds:.2f} s")
    for col in ("role", "calls", "prompt tokens", "completion tokens", "seconds"):
        table.add_column(col)
    for role, st in tr.roles.items():
        table.add_row(role, str(st.calls), str(st.prompt_tokens), str(st.completion_tokens), f"{st.seconds:.2f}")
    console.print(table)


@app.command()
def methods():
    """List the methods and their options (with the published defaults)."""
    from unlearnkit.methods.registry import get_method_class, method_names

    for name in method_names():
        cls = get_method_class(name)
        console.print(f"[bold]{name}[/bold] ({cls.family}): {cls.summary}")
        _print_options(cls.Options)


@app.command("attacks")
def list_attacks():
    """List the attacks and their options (set with 'unlearnkit attack --opt ATTACK.key=value')."""
    from unlearnkit.attacks import attack_names, get_attack_class

    for name in attack_names():
        cls = get_attack_class(name)
        console.print(f"[bold]{name}[/bold] ({cls.applies_to}): {cls.summary}")
        _print_options(cls.Options, prefix=f"{name}.")


@app.command("make-data")
def make_data(
    out: Annotated[Path, typer.Option(help="directory to write")],
    people: int = 10, forget: int = 2, holdout: int = 2, facts: int = 4, general: int = 12, seed: int = 0,
):
    """Write the built-in TOFU-style benchmark of fictitious people (JSON Lines + task.json)."""

    def go():
        from unlearnkit.data import generate_benchmark

        generate_benchmark(out, n_people=people, n_forget=forget, n_holdout=holdout, facts_per_person=facts,
                           seed=seed, n_general=general)
        console.print(f"written: {out}")

    _run(go)


@app.command()
def serve(
    model: ModelOpt = None,
    guard: Annotated[str, typer.Option(help="guard stack: prompt | eco | alu | none")] = "prompt",
    host: Annotated[str, typer.Option(help="bind address")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="port")] = 8000,
    db: Annotated[Optional[str], typer.Option(help="target registry: a SQLite file (default ./unlearnkit-registry.db) or a postgresql://USER:PASSWORD@HOST:PORT/DATABASE URL that gateway replicas share")] = None,
    opt: Annotated[Optional[list[str]], typer.Option("--opt", help="guard option key=value (repeatable)")] = None,
    prompt_filter: Annotated[bool, typer.Option(help="refuse prompts naming a registered target before the model runs")] = True,
    request_timeout: Annotated[Optional[float], typer.Option(help="seconds before an unanswered request gets a 504 and its remaining work is dropped (default 300)")] = None,
    max_request_tokens: Annotated[Optional[int], typer.Option(help="largest prompts x max_tokens of one request (default 16384)")] = None,
    max_prompts_per_turn: Annotated[Optional[int], typer.Option(help="prompts of one request answered per turn before others get theirs (default 4)")] = None,
    verify: Annotated[bool, typer.Option(help="probe each registered target in the background and record the leak and refusal rates in the audit log (target.verified)")] = True,
    prefix_cache: Annotated[bool, typer.Option(help="reuse the keys and values of the prompt start requests share (the guard's system prompt) instead of reading it for every request")] = True,
):
    """Serve an OpenAI-compatible API that enforces the registered forget targets live.

    The admin token comes from UNLEARNKIT_ADMIN_TOKEN (admin routes stay closed without it);
    an optional chat key from UNLEARNKIT_API_KEY.
    """

    def go():
        from unlearnkit.service import serve as do_serve

        do_serve(model=model, guard=guard, host=host, port=port, db=db, options=_parse_opts(opt or []),
                 prompt_filter=prompt_filter, request_timeout_s=request_timeout,
                 max_request_tokens=max_request_tokens, max_prompts_per_turn=max_prompts_per_turn,
                 verify_targets=verify, prefix_cache=prefix_cache)

    _run(go)


@app.command()
def attack(
    out: Annotated[Path, typer.Option(help="result JSON file")],
    model: ModelOpt = None,
    data: DataOpt = "builtin",
    forget: ForgetOpt = None,
    attacks: Annotated[Optional[str], typer.Option(help="comma-separated attacks (default: every one that applies)")] = None,
    translator: Annotated[Optional[str], typer.Option(help="model used to translate questions for other-language attacks")] = None,
    seed: int = 0,
    max_new_tokens: int = 64,
    opt: Annotated[Optional[list[str]], typer.Option("--opt", help="attack option ATTACK.key=value, e.g. many_shot.max_shots=16 (repeatable; see 'unlearnkit attacks')")] = None,
):
    """Attack a model or guard: paraphrase, few- and many-shot, masking, languages, jailbreaks, injection, best-of-N, format shift, quantization, relearning, soft prompts."""

    def go():
        from unlearnkit.attacks import run_attacks
        from unlearnkit.attacks.base import summary_table
        from unlearnkit.data import load_task
        from unlearnkit.io import write_json_atomic
        from unlearnkit.models import load_model

        options = _attack_options(opt or [])
        task = load_task(_data_dir(data), forget=forget)
        lm = load_model(model)
        names = [a.strip() for a in attacks.split(",")] if attacks else None
        result = run_attacks(lm, task.forget, names, task.retain, seed=seed, max_new_tokens=max_new_tokens,
                             translator=load_model(translator) if translator else None, options=options)
        write_json_atomic(out, result)
        _print_rows(summary_table(result), "attacks")
        console.print(f"written: {out}")

    _run(go)


def _attack_options(opts: list[str]) -> dict[str, dict[str, str]]:
    """``ATTACK.key=value`` items as ``{attack: {key: value}}`` (the attacks read the strings by their options)."""
    from unlearnkit.errors import ConfigError

    out: dict[str, dict[str, str]] = {}
    for key, value in _parse_opts(opts).items():
        attack, dot, name = key.partition(".")
        if not dot or not attack.strip() or not name.strip():
            raise ConfigError(f"--opt expects ATTACK.key=value (e.g. many_shot.max_shots=16), got '{key}={value}'")
        out.setdefault(attack.strip(), {})[name.strip()] = value
    return out


@app.command()
def scale(
    method: Annotated[str, typer.Option("--method", help="method name")],
    out: Annotated[Path, typer.Option(help="output directory")] = Path("runs/scale"),
    model: ModelOpt = None,
    sizes: Annotated[str, typer.Option(help="numbers of targets")] = "1,10,100,1000",
    sequential: Annotated[bool, typer.Option(help="apply the requests one after another (continual unlearning)")] = False,
    opt: Annotated[Optional[list[str]], typer.Option("--opt", help="method option key=value")] = None,
):
    """Unlearn 1, 10, 100, 1000 built-in people and report forget, utility and cost at each size."""

    def go():
        from unlearnkit.methods.registry import build_method
        from unlearnkit.models import load_model
        from unlearnkit.workflows.scale import ScaleConfig, run_builtin_scale

        cfg = ScaleConfig(sizes=tuple(int(x) for x in sizes.split(",")), sequential=sequential)
        run_builtin_scale(load_model(model), build_method(method, _parse_opts(opt or [])), config=cfg,
                          out_dir=out, method_name=method)
        console.print(f"written: {out / 'scale.json'}")

    _run(go)


@app.command()
def report(
    results: Annotated[list[Path], typer.Argument(help="result JSON files (eval, demo results.json, attack, scale)")],
    out: Annotated[Path, typer.Option(help="HTML file to write (a Markdown summary goes beside it)")] = Path("report.html"),
):
    """One HTML page with plots (and a Markdown summary) from the JSON results of any runs."""

    def go():
        from unlearnkit.reports.html import write_report

        write_report([str(p) for p in results], out, out.with_suffix(".md"))
        console.print(f"written: {out}, {out.with_suffix('.md')}")

    _run(go)


def _print_rows(rows: list[dict], title: str) -> None:
    from rich.table import Table

    if not rows:
        return
    table = Table(title=title)
    for key in rows[0]:
        table.add_column(str(key))
    for row in rows:
        table.add_row(*[f"{v:.3f}" if isinstance(v, float) else str(v) for v in row.values()])
    console.print(table)


def main() -> None:  # pragma: no cover
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
