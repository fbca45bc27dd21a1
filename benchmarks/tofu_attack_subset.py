"""Some of the TOFU benchmark's attacks on one chosen run, exactly as its attack stage runs them (same forget
questions, retain set, options, 64 new tokens, the evaluation's decoder slots, seed); for a method whose whole
suite is too costly to run at once (ALU: its agent chain takes 8-9 s a question on one CPU core), in parts.

    python benchmarks/tofu_attack_subset.py --method alu --run default --attacks plain,paraphrase --out alu-1.json
"""
import argparse
import sys

from rich.console import Console


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default="../shared/data/tofu", help="TOFU directory (as given to 'unlearnkit tofu')")
    ap.add_argument("--method", required=True, help="a method the TOFU benchmark ran, e.g. alu")
    ap.add_argument("--run", default="default", help="the setting's run directory name, e.g. default or lr5e-05")
    ap.add_argument("--attacks", required=True, help="comma-separated attack names")
    ap.add_argument("--out", required=True, help="result JSON")
    args = ap.parse_args(argv)

    from unlearnkit.errors import ConfigError
    from unlearnkit.io import write_json_atomic
    from unlearnkit.models import load_model
    from unlearnkit.workflows.tofu import TofuBenchConfig
    from unlearnkit.workflows.tofu_attacks import attack_one, attack_options
    from unlearnkit.workflows.tofu_models import TofuSetup, prepare_tofu_models

    console = Console()
    cfg = TofuBenchConfig(setup=TofuSetup(data=args.data))
    models = prepare_tofu_models(cfg.setup, console)
    run = models.cache / "runs" / args.method / args.run
    if not run.is_dir():
        raise ConfigError(f"no run {run}: run 'unlearnkit tofu --methods {args.method}' first")
    result = attack_one(load_model(str(run)), models.bench.task, args.attacks.split(","),
                        attack_options(cfg.attack_options), seed=cfg.unlearn.seed,
                        max_new_tokens=cfg.attack_max_new_tokens, batch_size=cfg.setup.eval.gen_batch_size,
                        work_dir=models.cache / "attack_work", method=args.method, console=console)
    result["run"] = str(run)
    write_json_atomic(args.out, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
