"""Every entry point refuses bad input the same way: exit status 1, one `error:` line naming the file, no traceback.

Each script runs as `python script.py ...` would, in this process (runpy with its __main__ block and
sys.argv), so that 20 cases cost seconds instead of an interpreter start each; finetune.py's and the
CLI layer's subprocess tests show the same path ends in a real exit status 1.
"""
import json
import runpy
import sys

import pytest

from conftest import RECORDS, ROOT, build_tiny_model, write_json


@pytest.fixture(scope="module")
def pair(tiny_model, tmp_path_factory):
    """An adapter made on the tiny model, another base of a different hidden size, and damaged copies."""
    import shutil

    from utils.adapters import attach_lora
    from utils.loading import load_base_model

    root = tmp_path_factory.mktemp("pair")
    adapter = root / "adapter"
    attach_lora(load_base_model(tiny_model)).save_pretrained(adapter)
    other = build_tiny_model(root / "other-base", hidden_size=32)
    cut = root / "cut-adapter"
    shutil.copytree(adapter, cut)
    weights = cut / "adapter_model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-100])
    bad_config = root / "bad-config-adapter"
    shutil.copytree(adapter, bad_config)
    (bad_config / "adapter_config.json").write_text("{\"r\": 8,", encoding="utf-8")
    no_weights = root / "base-without-weights"
    no_weights.mkdir()
    shutil.copy(f"{tiny_model}/config.json", no_weights)
    data = write_json(root / "cases.json", RECORDS[:2])
    malformed = root / "malformed.json"
    malformed.write_text(json.dumps(RECORDS[0], ensure_ascii=False) + "\n{在这里放你的数据}\n", encoding="utf-8")
    cut_json = root / "cut.json"
    cut_json.write_text(json.dumps(RECORDS[:2], ensure_ascii=False, indent=1)[:60], encoding="utf-8")
    exam = root / "exam"
    (exam / "val").mkdir(parents=True)
    (exam / "val" / "bank_val.csv").write_text("id,question,A,B\n0,问题,甲\n", encoding="utf-8")
    finished = root / "finished"
    shutil.copytree(adapter, finished)
    (finished / "cornucopia.json").write_text(json.dumps({"global_step": 8}), encoding="utf-8")
    return dict(base=tiny_model, finished=finished, adapter=adapter, other=other, cut=cut, bad_config=bad_config,
                no_weights=no_weights, data=data, malformed=malformed, cut_json=cut_json, exam=exam, missing=root / "missing.json",
                out=root / "out")


def run_entry(target, args, capsys, monkeypatch):
    """(exit status, stderr) of `python target args` (target a script, or -m module)."""
    monkeypatch.setattr(sys, "argv", [str(target), *map(str, args)])
    with pytest.raises(SystemExit) as stopped:
        if target.startswith("-m "):
            runpy.run_module(target[3:], run_name="__main__", alter_sys=False)
        else:
            runpy.run_path(str(ROOT / target), run_name="__main__")
    return stopped.value.code, capsys.readouterr().err


FT = ["--load_8bit", "False", "--max_steps", "1"]
# infer and evaluate write into outputs/ by default: every case points them into pair["out"], which must stay absent
INFER_OUT = ["--output_path", "{out}/answers.jsonl"]
EVAL_OUT = ["--output_dir", "{out}"]
CASES = {
    "finetune-micro-batch-over-batch": ("finetune.py", ["--base_model", "{base}", "--data_path", "{data}", "--output_dir",
                                                        "{out}", "--batch_size", "2", "--micro_batch_size", "4", *FT],
                                        "--batch_size (2) must be >= --micro_batch_size (4)"),
    "finetune-val-set-as-big-as-data": ("finetune.py", ["--base_model", "{base}", "--data_path", "{data}",
                                                        "--output_dir", "{out}", "--val_set_size", "2", *FT],
                                        "--val_set_size 2 is not smaller than the 2 records in {data}"),
    "finetune-base-without-weights": ("finetune.py", ["--base_model", "{no_weights}", "--data_path", "{data}",
                                                      "--output_dir", "{out}", *FT], "{no_weights}"),
    "finetune-unknown-template": ("finetune.py", ["--base_model", "{base}", "--data_path", "{data}", "--output_dir",
                                                  "{out}", "--prompt_template_name", "nope", *FT], "nope"),
    "finetune-finished-output": ("finetune.py", ["--base_model", "{base}", "--data_path", "{data}", "--output_dir",
                                                 "{finished}", *FT], "{finished} already holds a finished adapter"),

    # name: (entry point, flags, what the message must name)
    "infer-missing-data": ("infer.py", [*INFER_OUT, "--base_model", "{base}", "--infer_data_path", "{missing}"], "{missing}"),
    "infer-malformed-data": ("infer.py", [*INFER_OUT, "--base_model", "{base}", "--infer_data_path", "{malformed}"],
                             "{malformed}: line 2"),
    "infer-wrong-pair": ("infer.py", [*INFER_OUT, "--base_model", "{other}", "--lora_weights", "{adapter}", "--infer_data_path",
                                      "{data}"], "{adapter}/adapter_model.safetensors"),
    "infer-cut-adapter": ("infer.py", [*INFER_OUT, "--base_model", "{base}", "--lora_weights", "{cut}", "--infer_data_path",
                                       "{data}"], "{cut}/adapter_model.safetensors: does not load"),
    "compare-missing-data": ("compare.py", ["--base_model", "{base}", "--infer_data_path", "{missing}",
                                            "--output_dir", "{out}"], "{missing}"),
    "compare-malformed-data": ("compare.py", ["--base_model", "{base}", "--infer_data_path", "{malformed}",
                                              "--output_dir", "{out}"], "{malformed}: line 2"),
    "compare-wrong-pair": ("compare.py", ["--base_model", "{other}", "--lora_weights", "{adapter}",
                                          "--infer_data_path", "{data}", "--general_data_path", "", "--exam_dir", "",
                                          "--output_dir", "{out}"], "{adapter}/adapter_model.safetensors"),
    "evaluate-missing-exam": ("evaluate.py", [*EVAL_OUT, "--base_model", "{base}", "--exam_dir", "{missing}"], "{missing}"),
    "evaluate-malformed-exam": ("evaluate.py", [*EVAL_OUT, "--base_model", "{base}", "--exam_dir", "{exam}"],
                                "{exam}/val/bank_val.csv"),
    "evaluate-wrong-pair": ("evaluate.py", [*EVAL_OUT, "--base_model", "{other}", "--lora_weights", "{adapter}"],
                            "{adapter}/adapter_model.safetensors"),
    "merge-missing-adapter": ("merge_lora.py", ["--base_model", "{base}", "--lora_weights", "{missing}",
                                                "--output_dir", "{out}"], "{missing}"),
    "merge-malformed-adapter-config": ("merge_lora.py", ["--base_model", "{base}", "--lora_weights", "{bad_config}",
                                                         "--output_dir", "{out}"],
                                       "{bad_config}/adapter_config.json: not valid JSON"),
    "merge-wrong-pair": ("merge_lora.py", ["--base_model", "{other}", "--lora_weights", "{adapter}",
                                           "--output_dir", "{out}"], "{adapter}/adapter_model.safetensors"),
    "merge-base-without-weights": ("merge_lora.py", ["--base_model", "{no_weights}", "--lora_weights", "{adapter}",
                                                     "--output_dir", "{out}"], "{no_weights}"),
    "extend-vocab-missing-corpus": ("extend_vocab.py", ["--base_model", "{base}", "--corpus", "{missing}",
                                                        "--output_dir", "{out}"], "{missing}"),
    "extend-vocab-malformed-corpus": ("extend_vocab.py", ["--base_model", "{base}", "--corpus", "{malformed}",
                                                          "--output_dir", "{out}"], "{malformed}: line 2"),
    "extend-vocab-base-without-tokenizer": ("extend_vocab.py", ["--base_model", "{no_weights}", "--corpus", "{data}",
                                                                "--output_dir", "{out}"], "{no_weights}"),
    "data-check-missing": ("-m utils.data", ["check", "{missing}"], "{missing}"),
    # The checker lists every bad record of a readable file (tests/test_data_check.py); a file that is not
    # JSON at all is one error.
    "data-check-malformed": ("-m utils.data", ["check", "{cut_json}"], "{cut_json}: not valid JSON at line 5"),
    "data-check-missing-tokenizer": ("-m utils.data", ["check", "{data}", "--tokenizer", "{no_weights}"],
                                     "{no_weights}"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_is_exit_1_and_one_error_line_naming_the_file(case, pair, capsys, monkeypatch):
    target, flags, named = CASES[case]
    # each case says where its output would go (the finished-adapter case: the folder it must not overwrite)
    assert any(f in " ".join(flags) for f in ("{out}", "{finished}")) or target.startswith("-m ")
    outputs_before = sorted((ROOT / "outputs").rglob("*")) if (ROOT / "outputs").exists() else None
    status, stderr = run_entry(target, [f.format(**pair) for f in flags], capsys, monkeypatch)
    lines = [line for line in stderr.strip().splitlines() if line.startswith("error: ")]
    assert status == 1, stderr[-2000:]
    assert len(lines) == 1 and stderr.strip().endswith(lines[0]), stderr[-2000:]
    assert named.format(**pair) in lines[0], lines[0]
    assert "Traceback" not in stderr
    # every case names an output inside pair["out"] (infer and evaluate too): a refused input writes nothing there,
    # and nothing into the repository's own outputs/ (where a user's results live)
    assert not pair["out"].exists(), "nothing is written for a refused input"
    outputs_after = sorted((ROOT / "outputs").rglob("*")) if (ROOT / "outputs").exists() else None
    assert outputs_after == outputs_before
