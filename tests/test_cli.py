from typer.testing import CliRunner

from unlearnkit.cli import app

runner = CliRunner()


def test_methods_lists_every_method_with_options():
    result = runner.invoke(app, ["methods"])
    assert result.exit_code == 0, result.output
    for name in ("grad_ascent", "grad_diff", "npo", "simnpo", "prompting"):
        assert name in result.output
    assert "beta=0.1" in result.output  # NPO's published default


def test_unknown_method_is_a_clear_error(tmp_path):
    result = runner.invoke(app, ["unlearn", "--method", "forgetify", "--out", str(tmp_path / "o"), "--model", "tiny"])
    assert result.exit_code == 2
    assert "unknown method 'forgetify'" in result.output


def test_bad_opt_syntax_is_a_clear_error(tmp_path):
    result = runner.invoke(app, ["unlearn", "--method", "npo", "--opt", "beta", "--out", str(tmp_path / "o")])
    assert result.exit_code == 2
    assert "--opt expects key=value" in result.output


def test_missing_model_path_is_a_clear_error(tmp_path, tiny_data_dir):
    result = runner.invoke(app, ["eval", "--model", str(tmp_path / "missing"), "--data", str(tiny_data_dir),
                                 "--out", str(tmp_path / "r.json")])
    assert result.exit_code == 2
    assert "does not exist" in result.output
    assert not (tmp_path / "r.json").exists()


def test_attack_then_report_from_the_command_line(tmp_path, tiny_data_dir):
    out = tmp_path / "attacks.json"
    result = runner.invoke(app, ["attack", "--model", "tiny", "--data", str(tiny_data_dir), "--attacks",
                                 "plain,paraphrase,many_shot", "--max-new-tokens", "4", "--out", str(out)])
    assert result.exit_code == 0, result.output
    import json

    attacks = json.loads(out.read_text())["attacks"]
    assert set(attacks) == {"plain", "paraphrase", "many_shot"}
    assert all(0.0 <= a["leak_rate"] <= 1.0 for a in attacks.values())
    html = tmp_path / "r.html"
    result = runner.invoke(app, ["report", str(out), "--out", str(html)])
    assert result.exit_code == 0, result.output
    assert "data:image/png;base64," in html.read_text() and (tmp_path / "r.md").is_file()
