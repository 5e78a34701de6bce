"""Drive the web chat page of a running serve.py in headless Chromium, as a user would.

    python scripts/chat_page.py URL QUESTION OUT_PNG [--model NAME] [--side_by_side] [--left A --right B]
        [--max_tokens N]

asks QUESTION on the page at URL (Chat tab, or the Side-by-side tab), waits until the streamed
answer is complete, prints it and writes a screenshot to OUT_PNG. tests/test_web_page.py uses the
same ChatPage class. Needs Playwright (requirements-dev.txt) and a system Chromium
(Debian: apt-get install chromium fonts-noto-cjk); Playwright's own browser download is not used.
"""
from __future__ import annotations

import re
import shutil
import sys
import time
from pathlib import Path

BROWSERS = ("chromium", "chromium-browser", "google-chrome")
# Keep Chromium from reaching out: the machine may have no network.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
# Outputs of an event still running: Gradio shows their status trackers (pending, then generating) and hides
# every tracker once the event is over.
BUSY = "() => document.querySelectorAll('[data-testid=status-tracker]:not(.hide)').length"


def find_chromium() -> str | None:
    return next((found for name in BROWSERS if (found := shutil.which(name))), None)


class ChatPage:
    """The chat page in a headless Chromium: `with ChatPage(url) as page: page.ask("...")`."""

    def __init__(self, url: str, browser: str | None = None, width: int = 1300, height: int = 900):
        self.url, self.browser_path, self.size = url, browser or find_chromium(), {"width": width, "height": height}
        if not self.browser_path:
            raise RuntimeError("no Chromium found; install it (Debian: apt-get install chromium fonts-noto-cjk)")

    def __enter__(self) -> ChatPage:
        from playwright.sync_api import sync_playwright

        self._playwright = sync_playwright().start()
        self._browser = self._playwright.chromium.launch(executable_path=self.browser_path, args=CHROMIUM_ARGS)
        self.page = self._browser.new_page(viewport=self.size)
        self.page.goto(self.url)
        self.page.locator("#chat-input textarea").wait_for(timeout=60_000)
        return self

    def __exit__(self, *exc) -> None:
        self._browser.close()
        self._playwright.stop()

    # -- controls --------------------------------------------------------------------------------
    def tab(self, name: str) -> None:
        """Open the tab whose label contains NAME ("Chat" or "Side by side")."""
        self.page.get_by_role("tab", name=name).click()

    def choose(self, elem_id: str, value: str) -> None:
        """Pick VALUE in the drop-down ELEM_ID."""
        box = self.page.locator(f"#{elem_id} input")
        if box.input_value() == value:
            return
        box.click()
        box.fill(value)
        exact = re.compile(rf"^\W*{re.escape(value)}\s*$")  # an option's text is its value, maybe after a check mark
        self.page.locator("ul.option-list li").filter(has_text=exact).first.click()
        self.page.wait_for_function(f"() => document.querySelector('#{elem_id} input').value === {value!r}")
        self.wait_idle()  # a new model starts a new conversation: let that reset finish first

    def wait_idle(self, timeout: float = 30) -> None:
        time.sleep(0.3)
        self.page.wait_for_function(f"() => !({BUSY})()", timeout=timeout * 1000)

    def set_max_tokens(self, prefix: str, value: int, attempts: int = 5) -> None:
        settings = self.page.locator(f"#{prefix}-settings")
        number = self.page.locator(f"#{prefix}-max-tokens input[type=number]")
        slider = f"#{prefix}-max-tokens input[type=range]"
        if not number.is_visible():
            settings.locator("button").first.click()
        # The slider commits the number box's value asynchronously, and a value typed while the settings panel
        # is still opening can be dropped; a question sent before the slider shows it would be answered with
        # the old setting. So type it again, waiting longer each time (45 s in all, for a slow machine), until the
        # slider itself shows the new value.
        from playwright.sync_api import TimeoutError as PlaywrightTimeout

        for attempt in range(1, attempts + 1):
            number.fill(str(value))
            number.press("Enter")
            number.blur()
            try:
                self.page.wait_for_function("([sel, want]) => document.querySelector(sel)?.value === want",
                                            arg=[slider, str(value)], timeout=3_000 * attempt)
                return
            except PlaywrightTimeout:
                pass  # type it again
        shows = self.page.evaluate("(sel) => document.querySelector(sel)?.value", slider)
        raise TimeoutError(f"the {prefix} max-tokens slider shows {shows!r}, not {value}, after {attempts} tries "
                           f"(number box: {number.input_value()!r})")

    def _send(self, prefix: str, question: str) -> None:
        self.page.locator(f"#{prefix}-input textarea").fill(question)
        self.page.locator(f"#{prefix}-send").click()

    def answers(self, box_id: str) -> list[str]:
        return [text.strip() for text in self.page.locator(f"#{box_id} .bot").all_inner_texts()]

    def wait_for_answers(self, box_ids: list[str], before: list[int], timeout: float = 180) -> list[str]:
        """Wait until each box has one answer more than BEFORE, all non-empty, and no event is running."""
        deadline, seen, stable_since = time.monotonic() + timeout, None, None
        while time.monotonic() < deadline:
            texts = [self.answers(box) for box in box_ids]
            ready = all(len(t) > n and t[-1] for t, n in zip(texts, before)) and not self.page.evaluate(BUSY)
            now = [t[-1] if t else "" for t in texts]
            if ready and now == seen:
                if time.monotonic() - stable_since > 0.5:
                    return now
            else:
                seen, stable_since = now, time.monotonic()
            time.sleep(0.2)
        raise TimeoutError(f"no complete answer in {', '.join(box_ids)} after {timeout:.0f} s (so far: {seen})")

    # -- what a user does ------------------------------------------------------------------------
    def ask(self, question: str, model: str | None = None, max_tokens: int | None = None, timeout: float = 180) -> str:
        """Ask QUESTION in the Chat tab; the streamed answer once it is complete."""
        self.tab("Chat")
        if model:
            self.choose("chat-model", model)
        if max_tokens:
            self.set_max_tokens("chat", max_tokens)
        before = [len(self.answers("chat-box"))]
        self._send("chat", question)
        return self.wait_for_answers(["chat-box"], before, timeout)[0]

    def ask_side_by_side(self, question: str, left: str | None = None, right: str | None = None,
                         max_tokens: int | None = None, timeout: float = 180) -> tuple[str, str]:
        """Ask QUESTION of two models at once in the Side-by-side tab; both complete answers."""
        self.tab("Side by side")
        if left:
            self.choose("compare-model-a", left)
        if right:
            self.choose("compare-model-b", right)
        if max_tokens:
            self.set_max_tokens("compare", max_tokens)
        boxes = ["compare-box-a", "compare-box-b"]
        before = [len(self.answers(box)) for box in boxes]
        self._send("compare", question)
        return tuple(self.wait_for_answers(boxes, before, timeout))

    def screenshot(self, path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        self.page.screenshot(path=str(path), full_page=True)
        return path


def main(url: str, question: str, out: str, model: str | None = None, side_by_side: bool = False,
         left: str | None = None, right: str | None = None, max_tokens: int | None = None) -> None:
    with ChatPage(url) as page:
        if side_by_side:
            for name, answer in zip(("left", "right"), page.ask_side_by_side(question, left, right, max_tokens)):
                print(f"{name}: {answer}")
        else:
            print(page.ask(question, model, max_tokens))
        print(page.screenshot(out))


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    import fire

    fire.Fire(main)
