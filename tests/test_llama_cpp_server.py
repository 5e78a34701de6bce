"""The llama.cpp route: the GGUF that merge_lora.py --gguf writes, served by llama.cpp's own OpenAI-compatible
server (`python -m llama_cpp.server`) and queried with the official `openai` client."""
from __future__ import annotations

import importlib.util
import json
import sys
import urllib.request

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from conftest import RECORDS, ROOT, run_script, write_json
from servers import free_port, running_process
from test_gguf import small_llama  # noqa: F401  (the fixture: a 2-layer random Llama the converter knows)
from utils.gguf_export import LLAMA_CPP_RUNTIME


def llama_cpp_server_missing() -> str | None:
    if importlib.util.find_spec("llama_cpp") is None:
        return "llama-cpp-python is not installed"
    try:
        import llama_cpp.server.app  # noqa: F401
    except ImportError as err:
        return f"llama-cpp-python is installed without its server ({err.name} missing)"
    return None


pytestmark = [pytest.mark.llama_cpp,
              pytest.mark.skipif(bool(llama_cpp_server_missing()), reason=f"{llama_cpp_server_missing()}: `bash "
                                 f"scripts/setup_llama_cpp.sh --runtime` builds {LLAMA_CPP_RUNTIME} (several minutes)")]
PROMPT = "什么是债券？"
MAX_TOKENS = 8


@pytest.fixture(scope="module")
def merged_gguf(small_llama, tmp_path_factory):  # noqa: F811
    """A small adapter trained on the small Llama, merged and written as f32 GGUF by merge_lora.py."""
    folder = tmp_path_factory.mktemp("llama-cpp")
    done = run_script("finetune.py", "--base_model", small_llama, "--data_path", write_json(folder / "d.json", RECORDS),
                      "--output_dir", folder / "lora", "--load_8bit", "False", "--max_steps", "4", "--learning_rate",
                      "1e-2", "--micro_batch_size", "2", "--batch_size", "2", "--cutoff_len", "128")
    assert done.returncode == 0, done.stderr[-2000:]
    merged = folder / "merged"
    done = run_script("merge_lora.py", "--base_model", small_llama, "--lora_weights", folder / "lora",
                      "--output_dir", merged, "--dtype", "float32", "--gguf", "f32")
    assert done.returncode == 0, done.stderr[-2000:]
    return merged, merged / json.loads((merged / "cornucopia.json").read_text())["gguf"]


@pytest.fixture(scope="module")
def llama_server(merged_gguf):
    _, gguf = merged_gguf
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with running_process([sys.executable, "-m", "llama_cpp.server", "--model", str(gguf), "--host", "127.0.0.1",
                          "--port", str(port), "--n_ctx", "512", "--model_alias", "cornucopia-merged"],
                         f"{url}/v1/models", gguf.parent.parent / "llama_server.log", cwd=ROOT):
        yield url


def test_llama_cpp_server_answers_as_the_merged_model(merged_gguf, llama_server):
    from openai import OpenAI

    merged, _ = merged_gguf
    client = OpenAI(base_url=f"{llama_server}/v1", api_key="none")
    assert [m.id for m in client.models.list().data] == ["cornucopia-merged"]

    # The raw prompt, as llama.cpp tokenizes it; the merged Hugging Face model continues it greedily.
    request = urllib.request.Request(f"{llama_server}/extras/tokenize", json.dumps({"input": PROMPT}).encode(),
                                     {"Content-Type": "application/json"})
    ids = json.loads(urllib.request.urlopen(request).read())["tokens"]
    hf = AutoModelForCausalLM.from_pretrained(merged, dtype=torch.float32)
    out = hf.generate(torch.tensor([ids]), max_new_tokens=MAX_TOKENS, do_sample=False, pad_token_id=0)
    expected = AutoTokenizer.from_pretrained(merged).decode(out[0, len(ids):], skip_special_tokens=True)

    completion = client.completions.create(model="cornucopia-merged", prompt=PROMPT, max_tokens=MAX_TOKENS,
                                           temperature=0)
    assert expected and completion.choices[0].text == expected

    stream = client.completions.create(model="cornucopia-merged", prompt=PROMPT, max_tokens=MAX_TOKENS,
                                       temperature=0, stream=True)
    assert "".join(chunk.choices[0].text for chunk in stream) == expected

    chat = client.chat.completions.create(model="cornucopia-merged", messages=[{"role": "user", "content": PROMPT}],
                                          max_tokens=MAX_TOKENS, temperature=0)
    assert chat.choices[0].message.role == "assistant" and chat.usage.completion_tokens > 0
