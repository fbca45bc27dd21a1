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


def test_eval_suite_wmdp_from_the_command_line(tmp_path):
    import json

    data = tmp_path / "wmdp" / "bio"
    data.mkdir(parents=True)
    rows = [{"question": f"Q{i}?", "choices": ["a", "b", "c", "d"], "answer": i % 4} for i in range(6)]
    (data / "test.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    out = tmp_path / "wmdp.json"
    result = runner.invoke(app, ["eval", "--suite", "wmdp", "--model", "tiny", "--data", str(tmp_path / "wmdp"),
                                 "--out", str(out)])
    assert result.exit_code == 0, result.output
    saved = json.loads(out.read_text())
    assert saved["suite"] == "wmdp"
    assert len(saved["per_example"]["bio"]) == 6
    assert 0.0 <= saved["summary"]["accuracy"] <= 1.0


def test_eval_unknown_suite_and_missing_data_are_clear_errors(tmp_path):
    result = runner.invoke(app, ["eval", "--suite", "trivia", "--model", "tiny", "--data", str(tmp_path),
                                 "--out", str(tmp_path / "r.json")])
    assert result.exit_code == 2 and "unknown evaluation suite 'trivia'" in result.output
    result = runner.invoke(app, ["eval", "--suite", "mmlu", "--model", "tiny", "--out", str(tmp_path / "r.json")])
    assert result.exit_code == 2 and "needs --data PATH" in result.output


def test_suites_lists_every_suite():
    result = runner.invoke(app, ["suites"])
    assert result.exit_code == 0, result.output
    for name in ("tofu", "wmdp", "mmlu", "muse", "wpu", "pku"):
        assert name in result.output


def test_alu_guard_then_ask_shows_the_agents(tmp_path, tiny_data_dir):
    out = tmp_path / "alu"
    result = runner.invoke(app, ["unlearn", "--method", "alu", "--model", "tiny", "--data", str(tiny_data_dir),
                                 "--out", str(out), "--opt", "k=2", "--opt", "j=1"])
    assert result.exit_code == 0, result.output
    assert (out / "guard.json").is_file()
    result = runner.invoke(app, ["ask", "--model", str(out), "--max-new-tokens", "4", "Tell me a story."])
    assert result.exit_code == 0, result.output
    assert "answer:" in result.output and "LLM calls:" in result.output and "path:" in result.output
