"""The web chat page in a real headless Chromium (Debian's), against a real serve.py with the embedded base and
a small adapter: the streamed answer on the page is the server's greedy answer, and the side-by-side
tab streams two models' answers next to each other."""
from __future__ import annotations

import re
import struct
import sys

import pytest

from conftest import ROOT
from servers import free_port, running_process, save_random_adapter

sys.path.insert(0, str(ROOT / "scripts"))
from chat_page import ChatPage, find_chromium  # noqa: E402

needs_chromium = pytest.mark.skipif(find_chromium() is None, reason="no Chromium on this machine (Debian: apt-get install "
                                "chromium fonts-noto-cjk; scripts/test.sh does it when run as root)")
MAX_TOKENS = 24
QUESTION = "什么是债券？"


@pytest.fixture(scope="module")
def server(smollm2, tmp_path_factory):
    """serve.py with the embedded base and an adapter named `fin`, on a free port; yields its URL.

    The adapter is saved the project's way (PEFT + cornucopia.json, fin_qa template) with random LoRA B
    matrices instead of training: only its answers differing from the base's matter here.
    """
    folder = tmp_path_factory.mktemp("web")
    adapter = save_random_adapter(smollm2, folder / "fin", seed=1)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with running_process([sys.executable, "serve.py", "--bf16", "False", "--base_model", smollm2,
                          "--lora_weights", f"fin={adapter}", "--port", str(port)],
                         f"{url}/health", folder / "server.log", cwd=ROOT, timeout_s=180):
        yield url


def client(url: str):
    from openai import OpenAI

    return OpenAI(base_url=f"{url}/v1", api_key="none")


def greedy(url: str, model: str, question: str) -> str:
    """The server's own non-streamed greedy answer, through the official client."""
    reply = client(url).chat.completions.create(model=model, messages=[{"role": "user", "content": question}],
                                                max_tokens=MAX_TOKENS, temperature=0)
    return reply.choices[0].message.content


def shown(text: str) -> str:
    """Text as the page shows it: the chat box renders Markdown (a leading "-" becomes a bullet, `*x*` italics,
    "\\" escapes vanish, a leading "1." becomes a numbered list), so compare without Markdown's marks and spacing."""
    return re.sub(r"[\s*_#>`+\-\\]", "", re.sub(r"(?m)^\s*\d+[.)]\s*", "", text))


def png_size(path) -> tuple[int, int]:
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", head[16:24])


@pytest.mark.browser
@needs_chromium
def test_chat_streams_the_greedy_answer_and_side_by_side_shows_two(server, tmp_path):
    base = client(server).models.list().data[0].id
    expected = {model: greedy(server, model, QUESTION) for model in (base, "fin")}
    assert all(expected.values()) and expected["fin"] != expected[base]
    with ChatPage(f"{server}/") as page:
        answer = page.ask(QUESTION, model="fin", max_tokens=MAX_TOKENS)
        assert answer and shown(answer) == shown(expected["fin"])
        width, height = png_size(page.screenshot(tmp_path / "chat.png"))
        assert width >= 1000 and height >= 600

        left, right = page.ask_side_by_side(QUESTION, left=base, right="fin",
                                            max_tokens=MAX_TOKENS)
        assert shown(left) == shown(expected[base])
        assert shown(right) == shown(expected["fin"])
        assert page.answers("compare-box-a") == [left] and page.answers("compare-box-b") == [right]
        page.screenshot(tmp_path / "side_by_side.png")
        # A follow-up question continues the conversation on both sides.
        page.ask_side_by_side("它有什么风险？", max_tokens=8)
        assert [len(page.answers(box)) for box in ("compare-box-a", "compare-box-b")] == [2, 2]


@pytest.fixture(scope="module")
def tiny_engine(tiny_model):
    from utils.serving.engine import GenerationEngine

    engine = GenerationEngine.load(tiny_model)
    yield engine
    engine.close()


def test_with_an_api_key_the_page_wants_it_as_password_and_the_page_can_be_turned_off(tiny_engine):
    from fastapi.testclient import TestClient

    from utils.serving.api import create_app

    with TestClient(create_app(tiny_engine, api_key="sesame")) as http:
        assert http.get("/config").status_code == 401  # the page's configuration, before logging in
        assert http.post("/login", data={"username": "me", "password": "wrong"}).status_code == 400
        assert http.post("/login", data={"username": "me", "password": "sesame"}).status_code == 200
        assert http.get("/config").status_code == 200
        assert http.get("/health").status_code == 200
    with TestClient(create_app(tiny_engine, web_page=False)) as http:
        assert http.get("/").status_code == 404 and http.get("/config").status_code == 404
        assert http.get("/v1/models").json()["data"][0]["id"] == tiny_engine.model_ids()[0]
