"""The server's sampling settings and quantized loading, on the tiny random model (seconds): temperature, top_p and
seed per request, the default generation settings per request, and 8-bit / 4-bit bases answering."""
from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from utils.serving.api import create_app
from utils.serving.engine import GenerationEngine


def ask(client, **fields):
    body = {"model": "tiny", "messages": [{"role": "user", "content": "什么是股票？"}], "max_tokens": 12, **fields}
    reply = client.post("/v1/chat/completions", json=body)
    assert reply.status_code == 200, reply.text
    return reply.json()["choices"][0]["message"]["content"]


@pytest.fixture(scope="module")
def client(tiny_model, tmp_path_factory):
    import shutil

    folder = tmp_path_factory.mktemp("m") / "tiny"  # the model id is the folder's name
    shutil.copytree(tiny_model, folder)
    engine = GenerationEngine.load(str(folder), bf16=False)
    with TestClient(create_app(engine, web_page=False)) as test_client:
        yield test_client
    engine.close()


def test_a_seed_repeats_a_sampled_answer_and_another_seed_changes_it(client):
    first = ask(client, temperature=1.0, seed=7)
    assert ask(client, temperature=1.0, seed=7) == first
    others = {ask(client, temperature=1.0, seed=seed) for seed in range(8, 12)}
    assert others - {first}, "four other seeds all gave the same sampled answer"


def test_temperature_zero_and_a_tiny_top_p_are_greedy(client):
    greedy = ask(client)
    assert ask(client, temperature=0) == greedy
    # top_p 0.001 keeps only the most likely token: sampling then is greedy, whatever the seed
    assert {ask(client, temperature=1.0, top_p=0.001, seed=seed) for seed in (1, 2, 3)} == {greedy}


def test_penalties_per_request_change_the_answer_and_bad_values_are_400(client):
    greedy = ask(client, max_tokens=24)
    assert ask(client, max_tokens=24, no_repeat_ngram_size=1) != greedy  # no token may appear twice
    for field, value in (("repetition_penalty", 0), ("no_repeat_ngram_size", -1), ("top_k", 1.5)):
        reply = client.post("/v1/chat/completions", json={"model": "tiny", "messages": [
            {"role": "user", "content": "x"}], field: value})
        assert reply.status_code == 400 and reply.json()["error"]["param"] == field


@pytest.mark.parametrize("quantization", ["load_8bit", "load_4bit"])
def test_a_quantized_base_serves(tiny_model, quantization):
    engine = GenerationEngine.load(tiny_model, **{quantization: True})
    try:
        with TestClient(create_app(engine, web_page=False)) as test_client:
            model = test_client.get("/v1/models").json()["data"][0]["id"]
            reply = test_client.post("/v1/chat/completions", json={
                "model": model, "messages": [{"role": "user", "content": "什么是股票？"}], "max_tokens": 6})
        assert reply.status_code == 200 and reply.json()["usage"]["completion_tokens"] >= 1
        linear = engine.model.model.layers[0].self_attn.q_proj
        assert type(linear).__name__ == ("Linear8bitLt" if quantization == "load_8bit" else "Linear4bit")
    finally:
        engine.close()
