"""End-to-end workflows the CLI and benchmarks call: data → model → method → evaluation → report."""
