"""One set of generation defaults (utils/settings.py GENERATION) reaches infer, compare, serve and the web page."""
from __future__ import annotations

import dataclasses

import pytest

from conftest import RECORDS, write_json
from utils import settings
from utils.generation import GenerationSettingsError, generation_settings


class Captured(Exception):
    """Raised by a stand-in to stop an entry point once it has handed over its settings."""


def test_unset_flags_give_the_very_object_and_set_ones_a_copy():
    assert generation_settings() is settings.GENERATION
    assert generation_settings(max_new_tokens=None, repetition_penalty=None) is settings.GENERATION
    changed = generation_settings(repetition_penalty=1.2)
    assert changed.repetition_penalty == 1.2 and changed.max_new_tokens == settings.GENERATION.max_new_tokens
    assert changed == dataclasses.replace(settings.GENERATION, repetition_penalty=1.2)
    with pytest.raises(GenerationSettingsError, match="--no_repeat_ngram_size must be 0"):
        generation_settings(no_repeat_ngram_size=-1)


def test_infer_compare_serve_and_the_page_start_from_the_same_object(tiny_model, tmp_path, monkeypatch):
    import compare
    import infer
    import serve
    from utils.serving import engine as engine_module
    from utils.serving.web import build_chat_page

    seen = {}

    def capture(name):
        def stand_in(*args, **kwargs):
            seen[name] = kwargs["generation"]
            raise Captured
        return stand_in

    cases = write_json(tmp_path / "cases.json", RECORDS[:2])
    monkeypatch.setattr(infer, "answer_cases", capture("infer"))
    with pytest.raises(Captured):
        infer.main(base_model=tiny_model, infer_data_path=str(cases), output_path=str(tmp_path / "a.jsonl"))
    monkeypatch.setattr(compare, "compare", capture("compare"))
    with pytest.raises(Captured):
        compare.main(base_model=tiny_model, infer_data_path=str(cases), exam_dir="", general_data_path="")
    monkeypatch.setattr(engine_module.GenerationEngine, "load", capture("serve"))
    with pytest.raises(Captured):
        serve.main(base_model=tiny_model, web_page=False)
    assert seen["infer"] is seen["compare"] is seen["serve"] is settings.GENERATION

    monkeypatch.undo()  # a real engine, whose defaults the page shows
    engine = engine_module.GenerationEngine.load(tiny_model)
    try:
        assert engine.defaults is settings.GENERATION
        page = build_chat_page(engine)
        values = {block.elem_id: getattr(block, "value", None) for block in page.blocks.values()
                  if getattr(block, "elem_id", None)}
        assert values["chat-max-tokens"] == values["compare-max-tokens"] == settings.GENERATION.max_new_tokens
        assert values["chat-repetition-penalty"] == settings.GENERATION.repetition_penalty
        assert values["chat-no-repeat-ngram"] == settings.GENERATION.no_repeat_ngram_size
    finally:
        engine.close()


def test_a_flag_overrides_one_field_per_run(tiny_model, tmp_path, monkeypatch):
    import infer

    seen = {}

    def stand_in(*args, **kwargs):
        seen["generation"] = kwargs["generation"]
        raise Captured

    monkeypatch.setattr(infer, "answer_cases", stand_in)
    cases = write_json(tmp_path / "cases.json", RECORDS[:2])
    with pytest.raises(Captured):
        infer.main(base_model=tiny_model, infer_data_path=str(cases), output_path=str(tmp_path / "a.jsonl"),
                   no_repeat_ngram_size=7, do_sample="true")
    assert seen["generation"] == dataclasses.replace(settings.GENERATION, no_repeat_ngram_size=7, do_sample=True)
