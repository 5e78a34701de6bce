import pytest

from utils.prompter import Prompter, TemplateError, available_templates
from utils.settings import PROMPT_TEMPLATE


# The original Cornucopia's prompts, as its templates/*.json wrote them (the same string for input and no input).
ORIGINAL = {"fin_template": "下面是一个问题，运用金融财经知识来正确回答问题.\n### 问题:\n{instruction}\n### 回答:\n",
            "ori_template": "问题：{instruction} 回答:"}


@pytest.mark.parametrize("name", sorted(ORIGINAL))
def test_original_names_render_the_original_text(name):
    """An adapter trained by the original project is asked exactly what it was trained on."""
    prompter = Prompter(name)
    question = "什么是基金的赎回费？"
    assert prompter.generate_prompt(question).encode("utf-8") == ORIGINAL[name].format(instruction=question).encode("utf-8")
    # The original dropped the input; here it follows the question on its own line, the rest unchanged.
    with_input = prompter.generate_prompt(question, "持有20天")
    assert with_input == ORIGINAL[name].format(instruction=question + "\n持有20天")


def test_default_template_puts_input_in_the_prompt():
    prompter = Prompter(PROMPT_TEMPLATE)
    assert prompter.template_name == "fin_qa" == Prompter().template_name
    with_input = prompter.generate_prompt("这笔贷款月供多少？", "本金100万元，30年，年利率3.5%")
    without = prompter.generate_prompt("这笔贷款月供多少？")
    assert "### 背景资料:\n本金100万元，30年，年利率3.5%" in with_input
    assert "这笔贷款月供多少？" in with_input and "这笔贷款月供多少？" in without
    assert with_input != without and with_input.endswith("### 回答:\n")


def test_template_names_exist():
    for name in ("fin_qa", "fin_template", "ori_template", "alpaca"):
        assert name in available_templates()
        assert Prompter(name).generate_prompt("q", "ctx").count("ctx") == 1


def test_turns_pair_each_prompt_with_its_answer():
    prompter = Prompter("ori_template")
    record = {"history": [["什么是基金？", "基金是集合投资工具。"]], "instruction": "风险大吗？", "input": "",
              "output": "看品种。"}
    assert prompter.turns(record) == [(prompter.generate_prompt("什么是基金？"), "基金是集合投资工具。"),
                                      (prompter.generate_prompt("风险大吗？"), "看品种。")]
    assert prompter.prompt_for(record, "</s>") == (prompter.generate_prompt("什么是基金？") + "基金是集合投资工具。</s>"
                                                   + prompter.generate_prompt("风险大吗？"))


def test_unknown_template_lists_the_available_ones():
    with pytest.raises(TemplateError) as err:
        Prompter("no_such_template")
    assert "no_such_template" in str(err.value)
    assert "fin_template" in str(err.value) and "alpaca" in str(err.value)


def test_template_without_input_slot_is_refused(tmp_path, monkeypatch):
    import utils.prompter as prompter_module

    (tmp_path / "broken.json").write_text(
        '{"prompt_input": "问题：{instruction}", "prompt_no_input": "问题：{instruction}", "response_split": "答"}',
        encoding="utf-8")
    monkeypatch.setattr(prompter_module, "TEMPLATES_DIR", tmp_path)
    with pytest.raises(TemplateError, match="input"):
        Prompter("broken")


def test_chat_template_uses_the_tokenizers_own(tiny_model):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    with pytest.raises(TemplateError, match="chat template"):
        Prompter("chat", tokenizer)
    tokenizer.chat_template = "{% for m in messages %}<|{{ m.role }}|>{{ m.content }}{% endfor %}<|assistant|>"
    assert Prompter("chat", tokenizer).generate_prompt("问", "资料") == "<|user|>问\n\n资料<|assistant|>"


def test_stop_markers_are_read_from_each_template():
    assert Prompter("fin_qa").stop_markers() == [
        "下面是一个金融领域的问题。请给出专业、准确、简明的回答。", "### 问题:", "### 回答:",
        "下面是一个金融领域的问题，并附有相关的背景资料。请结合背景资料，给出专业、准确、简明的回答。", "### 背景资料:"]
    assert Prompter("fin_template").stop_markers() == ["下面是一个问题，运用金融财经知识来正确回答问题.", "### 问题:", "### 回答:"]
    assert Prompter("ori_template").stop_markers() == ["问题：", "回答:"]
    assert "### Instruction:" in Prompter("alpaca").stop_markers() and "### Response:" in Prompter("alpaca").stop_markers()
    assert Prompter("fin_qa").stop_token_ids() == []


def test_a_chat_template_stops_at_the_special_tokens_of_its_next_turn(smollm2):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(smollm2)
    prompter = Prompter("chat", tokenizer)
    # SmolLM2: <|im_end|>\n<|im_start|>user\n between an answer and the next question; both are special tokens,
    # so no plain-text marker (a bare "user" would cut answers that say "user").
    assert prompter.stop_markers() == []
    assert prompter.stop_token_ids() == sorted(tokenizer.convert_tokens_to_ids(["<|im_start|>", "<|im_end|>"]))
