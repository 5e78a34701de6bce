"""serve.py's API with the official `openai` client against a real server on 127.0.0.1 (a free port).

The embedded SmolLM2 base plus one small adapter whose LoRA B matrices are non-zero, so its answers differ
from the base's. Answers are short (a dozen tokens) to keep the file quick on two cores.
"""
from __future__ import annotations

import concurrent.futures
import json
import threading
import time

import httpx
import openai
import pytest
import uvicorn

from utils.serving.decoder import TextStream
from utils.loading import load_tokenizer
from utils.serving.api import create_app
from utils.serving.engine import GenerationEngine
from servers import free_port, save_random_adapter

QUESTIONS = ["什么是股票？", "What is a bond?", "LPR是什么意思？", "信用卡最低还款有利息吗？",
             "Explain inflation in one sentence.", "什么是基金定投？", "A股可以当天买卖吗？", "Name a safe investment."]
TOKENS = 8


class Server:
    """uvicorn serving create_app(engine) in a thread, on a free port."""

    def __init__(self, engine, api_key=None):
        self.engine, self.port = engine, free_port()
        self.server = uvicorn.Server(uvicorn.Config(create_app(engine, api_key=api_key, web_page=False), host="127.0.0.1",
                                                    port=self.port, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.time() + 30
        while not self.server.started:
            assert time.time() < deadline, "server did not start"
            time.sleep(0.05)
        self.url = f"http://127.0.0.1:{self.port}"

    def client(self, api_key="none") -> openai.OpenAI:
        return openai.OpenAI(base_url=self.url + "/v1", api_key=api_key, max_retries=0, timeout=120)

    def stop(self):
        self.server.should_exit = True
        self.thread.join(timeout=30)
        self.engine.close()


@pytest.fixture(scope="module")
def adapter(smollm2, tmp_path_factory) -> str:
    """A LoRA adapter saved the project's way, with lora_B made non-zero so that it changes the answers."""
    return save_random_adapter(smollm2, tmp_path_factory.mktemp("adapter") / "fin", seed=0)


@pytest.fixture(scope="module")
def plain_adapter(smollm2, tmp_path_factory) -> str:
    """An adapter that changes nothing (LoRA B zero): the base asked in its training template, fin_qa."""
    return save_random_adapter(smollm2, tmp_path_factory.mktemp("adapter") / "plain", seed=0, scale=0.0)


@pytest.fixture(scope="module")
def server(smollm2, adapter, plain_adapter):
    # bf16 False: greedy answers are batch-invariant exactly only in full precision (bf16 rounding flips near-ties)
    running = Server(GenerationEngine.load(smollm2, f"fin={adapter},plain={plain_adapter}", max_batch_size=16,
                                          batch_window_ms=20, bf16=False))
    yield running
    running.stop()


def chat(client, model, question, **options):
    return client.chat.completions.create(model=model, messages=[{"role": "user", "content": question}],
                                          max_tokens=options.pop("max_tokens", TOKENS), **options)


def streamed(client, model, question, **options) -> tuple[list[str], str | None]:
    deltas, finish = [], None
    for chunk in chat(client, model, question, stream=True, **options):
        if chunk.choices:
            deltas.append(chunk.choices[0].delta.content or "")
            finish = chunk.choices[0].finish_reason or finish
    return deltas, finish


def test_text_stream_never_splits_a_character_and_holds_back_a_stop_start(smollm2):
    tokenizer = load_tokenizer(smollm2)
    text = "股票是股份公司发行的所有权凭证，債券😀也是。"
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    assert len(ids) > len(text) // 2  # byte-level tokens: some characters take several
    stream = TextStream(tokenizer)
    deltas = [stream.push(i) for i in ids] + [stream.finish()]
    assert "".join(deltas) == text and not any("\ufffd" in d for d in deltas)
    assert any(d == "" for d in deltas)  # something was held back until its character was whole
    stream = TextStream(tokenizer, stop=["所有权凭证"])
    deltas = [stream.push(i) for i in ids]
    assert "".join(deltas) == "股票是股份公司发行的" and stream.stopped
    assert not any("所有" in d for d in deltas)


def test_models_lists_the_base_and_the_adapter_with_its_parent(server):
    models = {m.id: m for m in server.client().models.list().data}
    assert list(models) == ["SmolLM2-135M-Instruct", "fin", "plain"]
    assert models["fin"].parent == models["plain"].parent == "SmolLM2-135M-Instruct"
    assert httpx.get(server.url + "/health").json()["status"] == "ok"


def test_streamed_deltas_equal_the_plain_answer_without_broken_characters(server):
    client, answers = server.client(), {}
    for model in ("SmolLM2-135M-Instruct", "fin"):
        plain = chat(client, model, QUESTIONS[0], max_tokens=14)
        deltas, finish = streamed(client, model, QUESTIONS[0], max_tokens=14)
        answers[model] = plain.choices[0].message.content
        assert answers[model] and "".join(deltas) == answers[model]
        assert not any("\ufffd" in d for d in deltas)
        assert finish == plain.choices[0].finish_reason in ("stop", "length")
        if finish == "length":
            assert plain.usage.completion_tokens == 14
        assert plain.usage.prompt_tokens > 10 and plain.usage.total_tokens == (plain.usage.prompt_tokens
                                                                               + plain.usage.completion_tokens)
    assert answers["SmolLM2-135M-Instruct"] != answers["fin"]  # the adapter really changes the answer


def test_stop_is_honoured_plain_and_streamed(server):
    client = server.client()
    full = chat(client, "SmolLM2-135M-Instruct", QUESTIONS[1], max_tokens=16).choices[0].message.content
    assert len(full) > 12, full
    stop = full[len(full) // 2:len(full) // 2 + 3]
    expected = full[:full.find(stop)]
    plain = chat(client, "SmolLM2-135M-Instruct", QUESTIONS[1], max_tokens=16, stop=[stop, "never-seen"])
    assert plain.choices[0].message.content == expected and plain.choices[0].finish_reason == "stop"
    deltas, finish = streamed(client, "SmolLM2-135M-Instruct", QUESTIONS[1], max_tokens=16, stop=stop)
    assert "".join(deltas) == expected and finish == "stop"


# SmolLM2 asked this in fin_qa repeats the question and goes on into a new "### 问题:" turn (seen in full
# precision); the test finds the marker in the raw continuation itself, so it fails if the base changes.
MARKER_QUESTION = "A股现在还有熔断机制吗？"


def test_an_adapter_stops_at_its_template_turn_marker_plain_and_streamed(server, smollm2):
    """The marker and everything after it are cut, in the API (plain and streamed) and in infer's path."""
    from utils.adapters import load_for_inference
    from utils.generation import answer_cases, generation_settings
    from utils.prompter import Prompter

    client = server.client()
    prompter = Prompter("fin_qa", server.engine.tokenizer)
    markers = prompter.stop_markers()
    assert "### 问题:" in markers and "### 回答:" in markers
    # A raw completion (no template, so no template markers) shows what the model would say on its own.
    raw = client.completions.create(model="plain", prompt=prompter.generate_prompt(MARKER_QUESTION),
                                    max_tokens=48).choices[0].text
    cut = min(i for i in (raw.find(m) for m in markers) if i >= 0)
    assert raw[:cut].strip(), "the model should say something before it runs into the next turn"
    expected = raw[:cut]
    plain = chat(client, "plain", MARKER_QUESTION, max_tokens=48)
    assert plain.choices[0].message.content == expected and plain.choices[0].finish_reason == "stop"
    assert plain.usage.completion_tokens < 48
    deltas, finish = streamed(client, "plain", MARKER_QUESTION, max_tokens=48)
    assert "".join(deltas) == expected and finish == "stop"
    assert not any(m in "".join(deltas) for m in markers)
    # infer / compare: the same cut, and the row says why it ended.
    model, tokenizer = load_for_inference(smollm2)
    model.float()
    row = answer_cases(model, tokenizer, prompter, [{"instruction": MARKER_QUESTION, "input": "", "output": ""}],
                       generation=generation_settings(max_new_tokens=48), progress=False)[0]
    assert row["model_output"] == expected.strip() and row["finish_reason"] == "marker"


def test_completions_continue_a_raw_prompt(server):
    client = server.client()
    done = client.completions.create(model="SmolLM2-135M-Instruct", prompt="The capital of France is",
                                     max_tokens=8)
    assert done.choices[0].text.strip() and done.usage.completion_tokens <= 8
    stream = client.completions.create(model="SmolLM2-135M-Instruct", prompt="The capital of France is",
                                       max_tokens=8, stream=True)
    assert "".join(c.choices[0].text for c in stream if c.choices) == done.choices[0].text


def test_bad_requests_get_openai_errors_and_the_server_keeps_serving(server):
    url = server.url + "/v1/chat/completions"
    ask = {"model": "fin", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}
    cases = [
        ("{not json", 400, None),
        ({"model": "fin"}, 400, "messages"),
        ({**ask, "messages": []}, 400, "messages"),
        ({**ask, "messages": [{"role": "wizard", "content": "hi"}]}, 400, "messages"),
        ({**ask, "messages": "hi"}, 400, "messages"),
        ({**ask, "max_tokens": "ten"}, 400, "max_tokens"),
        ({**ask, "temperature": "hot"}, 400, "temperature"),
        ({**ask, "max_tokens": 0}, 400, "max_tokens"),
        ({**ask, "max_tokens": 10 ** 6}, 400, "max_tokens"),
        ({**ask, "n": 2}, 400, "n"),
        ({**ask, "model": "no-such-model"}, 404, "model"),
        ({**ask, "messages": [{"role": "user", "content": "money " * 9000}]}, 400, "messages"),
    ]
    for body, status, param in cases:
        content = body if isinstance(body, str) else json.dumps(body)
        response = httpx.post(url, content=content, headers={"Content-Type": "application/json"}, timeout=60)
        assert response.status_code == status, (body if isinstance(body, str) else list(body), response.text)
        error = response.json()["error"]
        assert error["message"] and error["type"] and error["param"] == param
    assert "SmolLM2-135M-Instruct, fin" in httpx.post(url, json={**ask, "model": "x"}).json()["error"]["message"]
    too_long = httpx.post(url, json={**ask, "messages": [{"role": "user", "content": "money " * 9000}]}).json()
    assert str(server.engine.context_len) in too_long["error"]["message"]
    with pytest.raises(openai.NotFoundError):
        chat(server.client(), "no-such-model", "hi")
    with pytest.raises(openai.BadRequestError):
        chat(server.client(), "fin", "hi", n=3)
    assert chat(server.client(), "fin", "hi", max_tokens=4).choices[0].message.content is not None


def test_sixteen_concurrent_requests_are_batched_late_ones_join_and_each_is_infers_answer(server, smollm2, adapter):
    """Rows share decoding steps (the batch grows past one row), requests sent while a batch runs join it, and
    every answer equals the one infer.py's path (transformers' generate, one prompt at a time) gives."""
    from utils.adapters import inference_prompter, load_for_inference
    from utils.generation import answer_cases, generation_settings

    client = server.client()
    jobs = [(model, q) for q in QUESTIONS for model in ("SmolLM2-135M-Instruct", "fin")]
    before = dict(server.engine.stats)
    with concurrent.futures.ThreadPoolExecutor(len(jobs)) as pool:
        futures = {job: pool.submit(lambda j: chat(client, *j).choices[0].message.content, job) for job in jobs[:8]}
        deadline = time.perf_counter() + 60
        while server.engine.running() == 0:  # the first requests are decoding: the rest arrive late
            assert time.perf_counter() < deadline, "no batch started"
            time.sleep(0.01)
        futures.update({job: pool.submit(lambda j: chat(client, *j).choices[0].message.content, job)
                        for job in jobs[8:]})
        began = time.perf_counter()
        health = httpx.get(server.url + "/health", timeout=10)  # answered while the batch runs
        health_seconds = time.perf_counter() - began
        together = {job: f.result() for job, f in futures.items()}
    assert health.status_code == 200 and health_seconds < 2
    stats = server.engine.stats
    assert stats["max_rows"] > 1, "rows were decoded one at a time: a serial engine"
    assert stats["joined_running_batch"] > before["joined_running_batch"], "no late request joined a running batch"
    expected = {}
    for model, adapter_path in (("SmolLM2-135M-Instruct", None), ("fin", adapter)):
        loaded, tokenizer = load_for_inference(smollm2, adapter_path)
        loaded.float()  # the server runs in full precision here (bf16 False)
        prompter = inference_prompter(tokenizer, None, adapter_path, prefer_chat=True)
        rows = answer_cases(loaded, tokenizer, prompter, [{"instruction": q, "input": "", "output": ""}
                                                          for q in QUESTIONS], batch_size=1,
                            generation=generation_settings(max_new_tokens=TOKENS), progress=False)
        expected.update({(model, q): row["model_output"] for q, row in zip(QUESTIONS, rows)})
    assert {job: text.strip() for job, text in together.items()} == expected
    assert len(set(expected.values())) > len(QUESTIONS)  # the adapter's answers are not the base's


@pytest.fixture(scope="module")
def small_server(smollm2):
    """One row at a time and one queue place, behind an API key."""
    running = Server(GenerationEngine.load(smollm2, max_batch_size=1, queue_size=1, bf16=False), api_key="s3cret")
    yield running
    running.stop()


def test_api_key_is_required_when_set(small_server):
    with pytest.raises(openai.AuthenticationError):
        small_server.client("wrong").models.list()
    no_key = httpx.get(small_server.url + "/v1/models")
    assert no_key.status_code == 401 and no_key.json()["error"]["type"] == "authentication_error"
    assert [m.id for m in small_server.client("s3cret").models.list().data] == ["SmolLM2-135M-Instruct"]


def test_full_queue_answers_503_at_once_and_a_disconnect_frees_the_slot(small_server):
    client = small_server.client("s3cret")
    health = lambda: httpx.get(small_server.url + "/health").json()  # noqa: E731
    long_stream = chat(client, "SmolLM2-135M-Instruct", "Tell me a long story.", max_tokens=2000, stream=True)
    next(iter(long_stream))  # generating: it holds the one batch row
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        waiting = pool.submit(chat, client, "SmolLM2-135M-Instruct", QUESTIONS[0], max_tokens=4)
        deadline = time.time() + 30
        while health()["queued"] < 1:
            assert time.time() < deadline
            time.sleep(0.05)
        began = time.perf_counter()
        with pytest.raises(openai.APIStatusError) as refused:
            chat(client, "SmolLM2-135M-Instruct", QUESTIONS[1], max_tokens=4)
        assert refused.value.status_code == 503 and time.perf_counter() - began < 2
        assert refused.value.body["type"] == "server_overloaded"
        long_stream.close()  # the client goes away mid-stream
        assert waiting.result(timeout=60).choices[0].message.content  # its row was freed for the next
    assert health()["running"] == 0 and health()["queued"] == 0


def test_serve_py_bad_flags_and_a_missing_adapter_give_one_error_line(smollm2, tmp_path):
    from conftest import run_script

    done = run_script("serve.py", "--base_model", smollm2, "--lora_weights", f"fin={tmp_path / 'nowhere'}",
                      "--port", "0", timeout=120)
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert "error: --port must be from 1 to 65535" in done.stderr
    done = run_script("serve.py", "--base_model", smollm2, "--lora_weights", f"fin={tmp_path / 'nowhere'}",
                      timeout=120)
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert f"error: LoRA weights '{tmp_path / 'nowhere'}' do not exist" in done.stderr
    done = run_script("serve.py", "--base_model", smollm2, "--lora_weights", "a=x,a=y", timeout=120)
    assert done.returncode == 1 and "two adapters are named 'a'" in done.stderr
