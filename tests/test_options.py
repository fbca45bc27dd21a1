"""One option system: annotation-driven conversion, declared choices and ranges, the same path for methods,
evaluation suites and attacks."""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Literal, Optional

import pytest
from typer.testing import CliRunner

import unlearnkit.options as options_module
from unlearnkit.errors import ConfigError
from unlearnkit.options import check_options, option, option_rows, read_options


@dataclass
class Demo:
    rate: float = option(0.1, "a rate", minimum=0, exclusive_minimum=True)
    share: float = option(0.5, "a share", minimum=0, maximum=1, exclusive_maximum=True)
    steps: int = option(3, "steps", minimum=1)
    flag: bool = option(False, "a switch")
    target: Optional[float] = option(None, "none = unset", minimum=0)
    layer: int | None = option(None, "none = the middle one")
    layers: tuple[int, ...] = option((), "layer indices", minimum=0)
    names: list[str] | None = option(None, "names")
    mode: Literal["fast", "exact"] = option("fast", "a Literal choice")
    loss: str = option("nll", "a declared choice", choices=("nll", "kl"))


def read(**pairs):
    return read_options(Demo, pairs, "thing 'demo'")


# -- conversion by annotation -----------------------------------------------------------------------
@pytest.mark.parametrize("text, value", [("true", True), ("Yes", True), ("on", True), ("1", True),
                                         ("false", False), ("NO", False), ("off", False), ("0", False)])
def test_bool_spellings(text, value):
    assert read(flag=text) == {"flag": value}


def test_bool_rejects_other_words():
    with pytest.raises(ConfigError, match=r"option 'flag' expects a value like False, got 'maybe' "
                                          r"\(give true or false\)"):
        read(flag="maybe")


def test_optional_reads_none_and_null_and_numbers():
    assert read(target="none") == {"target": None}
    assert read(target="NULL") == {"target": None}
    assert read(target="0.25") == {"target": 0.25}
    assert read(layer="null", steps="7") == {"layer": None, "steps": 7}
    assert read(layer="4")["layer"] == 4 and isinstance(read(layer="4")["layer"], int)


def test_optional_number_that_is_not_a_number_names_the_fix():
    with pytest.raises(ConfigError, match=r"option 'target' expects a value like 0.5 or none, got 'x' "
                                          r"\(give a number or none\)"):
        read(target="x")


def test_int_is_not_guessed_from_a_float():
    with pytest.raises(ConfigError, match="option 'steps' expects a value like 3, got '2.5'"):
        read(steps="2.5")


def test_tuples_and_lists_from_comma_separated_text():
    assert read(layers="1, 2,3") == {"layers": (1, 2, 3)}
    assert read(layers="") == {"layers": ()}
    assert read(names="x,y") == {"names": ["x", "y"]}
    with pytest.raises(ConfigError, match="comma-separated list of whole numbers"):
        read(layers="1,b")


def test_literal_and_declared_choices():
    assert read(mode="exact") == {"mode": "exact"}
    assert read(mode="EXACT") == {"mode": "exact"}  # another case is the same choice
    assert read(loss="KL") == {"loss": "kl"}
    with pytest.raises(ConfigError, match=r"option mode must be one of 'fast', 'exact' \(got 'slow'\)"):
        read(mode="slow")


def test_python_values_pass_unconverted_but_checked():
    assert read(steps=5, layers=[1, 2]) == {"steps": 5, "layers": [1, 2]}
    with pytest.raises(ConfigError, match="option 'steps' must be a whole number, got 2.5"):
        read(steps=2.5)
    with pytest.raises(ConfigError, match="option 'flag' must be true or false, got 'yes please'"):
        check_options(Demo(flag="yes please"), "thing 'demo'")


# -- choices, minimum, maximum ---------------------------------------------------------------------
@pytest.mark.parametrize("pairs, says", [
    ({"rate": "0"}, "thing 'demo': option rate must be > 0 (got 0.0)"),
    ({"share": "1"}, "option share must be in [0, 1) (got 1.0)"),
    ({"share": "-0.1"}, "option share must be in [0, 1) (got -0.1)"),
    ({"steps": "0"}, "option steps must be >= 1 (got 0)"),
    ({"target": "-1"}, "option target must be >= 0 (got -1.0)"),
    ({"layers": "1,-2"}, "option layers must be >= 0 (each) (got (1, -2))"),
    ({"loss": "mse"}, "option loss must be one of 'nll', 'kl' (got 'mse')"),
    ({"rate": "nan"}, "option rate must be a finite number > 0 (got nan)"),
    ({"rate": "inf"}, "option rate must be a finite number > 0 (got inf)"),
])
def test_out_of_range_names_option_value_and_range(pairs, says):
    with pytest.raises(ConfigError) as err:
        read(**pairs)
    assert says in str(err.value)


def test_unknown_option_lists_the_valid_ones():
    with pytest.raises(ConfigError) as err:
        read(rates="1")
    msg = str(err.value)
    assert msg.startswith("thing 'demo' has no option 'rates' (options: rate=0.1, share=0.5, steps=3, flag=False")
    assert "loss='nll')" in msg
    with pytest.raises(ConfigError, match="has no options 'a', 'b'"):
        read(a="1", b="2")


def test_rows_describe_each_option():
    rows = {r["name"]: r for r in option_rows(Demo)}
    assert rows["rate"] == {"name": "rate", "type": "float", "default": "0.1", "allowed": "> 0", "help": "a rate"}
    assert rows["share"]["allowed"] == "in [0, 1)"
    assert rows["target"]["type"] == "float | None" and rows["target"]["default"] == "None"
    assert rows["layers"]["type"] == "tuple[int, ...]"
    assert rows["mode"]["allowed"] == "one of 'fast', 'exact'"


# -- methods, suites and attacks use the same reader -------------------------------------------------
@pytest.fixture
def spy(monkeypatch):
    """Record every string the one converter reads, whoever asks."""
    seen = []
    real = options_module.convert

    def recording(raw, spec, owner=""):
        seen.append((owner, spec.name, raw))
        return real(raw, spec, owner)

    monkeypatch.setattr(options_module, "convert", recording)
    return seen


def test_methods_suites_and_attacks_go_through_the_same_converter(spy, tiny_lm, tmp_path):
    from unlearnkit.attacks import build_attack
    from unlearnkit.evaluation.suites import run_suite
    from unlearnkit.methods.registry import build_method

    method = build_method("npo", {"beta": "0.2", "retain_loss": "KL"})
    assert method.options.beta == 0.2 and method.options.retain_loss == "kl"
    attack = build_attack("best_of_n", n="3", top_p="0.5")
    assert (attack.n, attack.top_p) == (3, 0.5)
    with pytest.raises(ConfigError, match=r"suite 'wmdp': option backend must be one of 'unlearnkit', 'lm_eval' "
                                          r"\(got 'vllm'\)"):
        run_suite("wmdp", tiny_lm, tmp_path, limit="2", backend="vllm")
    assert ("method 'npo'", "beta", "0.2") in spy
    assert ("attack 'best_of_n'", "n", "3") in spy
    assert ("suite 'wmdp'", "limit", "2") in spy


@pytest.mark.parametrize("build, says", [
    (lambda: __import__("unlearnkit.methods.registry", fromlist=["x"]).build_method("grin", {"p": "2"}),
     "method 'grin': option p must be in (0, 1] (got 2.0)"),
    (lambda: __import__("unlearnkit.attacks", fromlist=["x"]).build_attack("quantize", bits="4,32"),
     "attack 'quantize': option bits must be in [2, 16] (each) (got (4, 32))"),
    (lambda: __import__("unlearnkit.attacks", fromlist=["x"]).build_attack("many_shot", shots="3"),
     "attack 'many_shot' has no option 'shots' (options: context_limit=None"),
])
def test_the_same_messages_for_methods_and_attacks(build, says):
    with pytest.raises(ConfigError) as err:
        build()
    assert says in str(err.value)


def test_direct_construction_is_checked_too(tmp_path):
    from unlearnkit.attacks.best_of_n import BestOfN
    from unlearnkit.evaluation.suites.wpu import evaluate_wpu

    with pytest.raises(ConfigError, match=r"attack 'best_of_n': option top_p must be in \(0, 1\] \(got 1.5\)"):
        BestOfN(top_p=1.5)
    with pytest.raises(ConfigError, match=r"suite 'wpu': option max_new_tokens must be >= 1 \(got 0\)"):
        evaluate_wpu(None, tmp_path, max_new_tokens=0)


def _every_options_holder():
    from unlearnkit.attacks import attack_names, get_attack_class
    from unlearnkit.evaluation.suites.registry import _implementation, suite_names

    for name in suite_names():
        fn = _implementation(name)
        yield f"suite {name}", fn.options_class, inspect.signature(fn)
    for name in attack_names():
        cls = get_attack_class(name)
        yield f"attack {name}", cls.Options, inspect.signature(cls.__init__)


@pytest.mark.parametrize("label, options_cls, signature", list(_every_options_holder()),
                         ids=lambda v: v if isinstance(v, str) else "")
def test_declared_defaults_match_the_code_defaults(label, options_cls, signature):
    """Suites and attacks keep their keyword defaults; their Options must say the same (and be valid)."""
    params = signature.parameters
    for spec in options_module.option_specs(options_cls).values():
        assert spec.name in params, (label, spec.name)
        assert params[spec.name].default == spec.default, (label, spec.name)
        options_module.check_value(spec, spec.default, label)


def test_every_method_default_passes_its_own_checks():
    from unlearnkit.methods.registry import get_method_class, method_names

    for name in method_names():
        cls = get_method_class(name)
        check_options(cls.Options(), f"method '{name}'")


def test_legacy_sentinels_read_as_none():
    from unlearnkit.methods.eco import ECOOptions
    from unlearnkit.methods.registry import build_method

    assert ECOOptions(sigma_target=-1.0).sigma_target is None  # how guard.json files wrote "unset" before
    assert build_method("rmu", {"layer": "none"}).options.layer is None
    with pytest.raises(ConfigError, match=r"option layer must be >= 0 \(got -1\)"):
        build_method("rmu", {"layer": "-1"})


def test_cli_listings_print_options_alike():
    from unlearnkit.cli import app

    runner = CliRunner()
    outputs = {verb: runner.invoke(app, [verb], env={"COLUMNS": "300"}) for verb in ("methods", "suites", "attacks")}
    for verb, result in outputs.items():
        assert result.exit_code == 0, (verb, result.output)
    assert "--opt beta=0.1  (float; > 0)  inverse temperature β of the NPO loss" in outputs["methods"].output
    assert "--opt backend='unlearnkit'  (str; one of 'unlearnkit', 'lm_eval')" in outputs["suites"].output
    assert "--opt best_of_n.top_p=1.0  (float; in (0, 1])  nucleus sampling mass" in outputs["attacks"].output


def test_attack_opt_on_the_command_line_is_read_by_the_attack(tiny_data_dir, tmp_path):
    from unlearnkit.cli import app

    result = CliRunner().invoke(app, ["attack", "--model", "tiny", "--data", str(tiny_data_dir), "--attacks",
                                      "best_of_n", "--opt", "best_of_n.n=0", "--out", str(tmp_path / "a.json")])
    assert result.exit_code == 2
    assert "attack 'best_of_n': option n must be >= 1 (got 0)" in " ".join(result.output.split())
    result = CliRunner().invoke(app, ["attack", "--model", "tiny", "--attacks", "plain", "--opt", "n=2",
                                      "--out", str(tmp_path / "b.json")])
    assert result.exit_code == 2 and "--opt expects ATTACK.key=value" in result.output
