"""Fixtures: a tiny random Llama with its own small tokenizer (seconds), and the embedded SmolLM2 base."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("WANDB_MODE", "disabled")

RECORDS = [
    {"instruction": "什么是股票？", "input": "", "output": "股票是股份公司发行的所有权凭证，股东按持股比例享有权益。"},
    {"instruction": "什么是债券？", "input": "", "output": "债券是发行人向投资者借款并承诺按期还本付息的债务凭证。"},
    {"instruction": "基金的申购费怎么算？", "input": "申购金额10000元，费率1.5%", "output": "净申购金额=10000/(1+1.5%)=9852.22元，申购费为147.78元。"},
    {"instruction": "信用卡最低还款有利息吗？", "input": "", "output": "选择最低还款不再享受免息期，未还部分从记账日起计息。"},
    {"instruction": "What is a bond?", "input": "", "output": "A bond is a loan to an issuer that pays interest and returns principal."},
    {"instruction": "什么是LPR？", "input": "", "output": "LPR是贷款市场报价利率，是银行贷款定价的主要参考。"},
    {"instruction": "存款保险保障多少？", "input": "", "output": "同一存款人在同一家银行的存款，最高偿付限额为人民币50万元。"},
    {"instruction": "A股可以当天买卖吗？", "input": "", "output": "A股实行T+1，当天买入的股票要到下一个交易日才能卖出。"},
]


def pytest_collection_modifyitems(config, items):
    """A test that uses the embedded base is slow, wherever it is: one rule instead of a mark on each."""
    for item in items:
        if "smollm2" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.slow)


def write_json(path: Path, value) -> Path:
    path.write_text(json.dumps(value, ensure_ascii=False, indent=1), encoding="utf-8")
    return path


def build_tiny_model(folder: Path, hidden_size: int = 64, seed: int = 0, tied: bool = False) -> Path:
    """A 2-layer random Llama and a byte-level BPE tokenizer trained on the fixture records; TIED shares the
    input embeddings with the LM head, as the embedded SmolLM2 base does."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    texts = [r[k] for r in RECORDS for k in ("instruction", "input", "output")]
    texts += [json.loads((ROOT / "templates" / f).read_text(encoding="utf-8"))["prompt_input"]
              for f in ("fin_qa.json", "fin_template.json", "ori_template.json", "alpaca.json")]
    trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=["<unk>", "<s>", "</s>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(texts, trainer)
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", bos_token="<s>", eos_token="</s>")
    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=hidden_size, intermediate_size=2 * hidden_size,
                         num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                         max_position_embeddings=512, initializer_range=0.2, bos_token_id=1, eos_token_id=2, pad_token_id=0,
                         tie_word_embeddings=tied)
    LlamaForCausalLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> str:
    return str(build_tiny_model(tmp_path_factory.mktemp("tiny-llama")))


@pytest.fixture()
def train_file(tmp_path) -> str:
    return str(write_json(tmp_path / "train.json", RECORDS))


@pytest.fixture(scope="session")
def smollm2() -> str:
    """The embedded default base, fetched (once, idempotently) by base_models/load.sh."""
    done = subprocess.run(["bash", str(ROOT / "base_models" / "load.sh")], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    return str(ROOT / "base_models" / "SmolLM2-135M-Instruct")


def run_script(*args, input=None, env=None, timeout=600) -> subprocess.CompletedProcess:
    """Run one of the project's entry scripts with this interpreter, from the repo root."""
    return subprocess.run([sys.executable, *map(str, args)], cwd=ROOT, capture_output=True, text=True,
                          input=input, timeout=timeout, env={**os.environ, **(env or {})})


PLAIN_PEFT_RELOAD = """
import sys, torch
from transformers import AutoModelForCausalLM, AutoTokenizer
from peft import PeftModel
base_dir, adapter_dir, prompt = sys.argv[1:4]
ids = AutoTokenizer.from_pretrained(base_dir)(prompt, return_tensors="pt").input_ids
base = AutoModelForCausalLM.from_pretrained(base_dir)
with torch.no_grad():
    before = base(input_ids=ids).logits
    after = PeftModel.from_pretrained(base, adapter_dir)(input_ids=ids).logits
print("max_change", (after - before).abs().max().item())
"""


def logit_change_with_plain_peft(base_dir, adapter_dir, prompt: str) -> float:
    """Load base + adapter with nothing but transformers and PEFT, in a separate process; how far the logits move."""
    done = run_script("-c", PLAIN_PEFT_RELOAD, base_dir, adapter_dir, prompt)
    assert done.returncode == 0, done.stderr[-2000:]
    return float(done.stdout.split("max_change")[1])
