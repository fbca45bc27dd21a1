"""Converting a GGUF file once, even when several processes or threads ask at the same moment."""

import threading
import time

import unlearnkit.models.gguf as gguf


def test_concurrent_first_loads_convert_once_and_all_get_the_directory(tmp_path, monkeypatch):
    calls = []

    def slow_load(path):
        calls.append(path)
        time.sleep(0.3)  # long enough for the others to arrive while the first converts
        return object(), object()

    def save(model, tokenizer, target):
        target.mkdir(parents=True)
        (target / "config.json").write_text("{}")
        return target

    monkeypatch.setattr(gguf, "load_gguf", slow_load)
    monkeypatch.setattr("unlearnkit.models.hf.save_model_dir", save)
    target = tmp_path / "models" / "m"
    got = []
    threads = [threading.Thread(target=lambda: got.append(gguf.convert_gguf(tmp_path / "m.gguf", target)))
               for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 1 and got == [target] * 3
