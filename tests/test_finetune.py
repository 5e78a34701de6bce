import json
from pathlib import Path

import pytest
import torch

import finetune
from conftest import RECORDS, logit_change_with_plain_peft, run_script, write_json
from utils.settings import PROMPT_TEMPLATE

FAST = dict(load_8bit=False, micro_batch_size=2, batch_size=2, learning_rate=1e-2, cutoff_len=128, logging_steps=1)


def logged_losses(output_dir):
    state = sorted(Path(output_dir).glob("checkpoint-*/trainer_state.json"), key=lambda p: int(p.parent.name[11:]))
    return [e["loss"] for e in json.loads(state[-1].read_text())["log_history"] if "loss" in e]


def test_loss_goes_down_and_adapter_is_saved(tiny_model, train_file, tmp_path):
    out = tmp_path / "lora"
    summary = finetune.train(base_model=tiny_model, data_path=train_file, output_dir=str(out),
                             max_steps=24, save_steps=24, **FAST)
    losses = logged_losses(out)
    assert len(losses) == 24
    assert sum(losses[-4:]) / 4 < 0.9 * sum(losses[:4]) / 4, losses
    adapter = out / "adapter_model.safetensors"
    assert adapter.stat().st_size > 1000 and summary["adapter_bytes"] == adapter.stat().st_size
    info = json.loads((out / "cornucopia.json").read_text())
    assert info["prompt_template"] == PROMPT_TEMPLATE and info["global_step"] == 24
    assert summary["train_tokens"] > 0 and summary["train_tokens_per_second"] > 0


def test_adapter_reloads_with_plain_peft_in_another_process(tiny_model, train_file, tmp_path):
    out = tmp_path / "lora"
    finetune.train(base_model=tiny_model, data_path=train_file, output_dir=str(out), max_steps=8, save_steps=8, **FAST)
    assert logit_change_with_plain_peft(tiny_model, out, "什么是股票？") > 1e-3


def test_8bit_training_runs(tiny_model, train_file, tmp_path):
    out = tmp_path / "lora8"
    summary = finetune.train(base_model=tiny_model, data_path=train_file, output_dir=str(out),
                             max_steps=3, save_steps=3, **{**FAST, "load_8bit": True})
    assert summary["global_step"] == 3 and (out / "adapter_model.safetensors").stat().st_size > 1000
    from safetensors.torch import load_file

    lora_b = [v for k, v in load_file(str(out / "adapter_model.safetensors")).items() if "lora_B" in k]
    assert lora_b and all(torch.count_nonzero(v) > 0 for v in lora_b), "8-bit training moved every LoRA B"


def test_4bit_qlora_training_runs(tiny_model, train_file, tmp_path, monkeypatch):
    """--load_4bit alone trains QLoRA (nf4 base via bitsandbytes, which runs 4-bit on CPU too) and moves LoRA B."""
    import bitsandbytes as bnb
    from safetensors.torch import load_file

    from utils import adapters

    quantized = []
    original = adapters.get_peft_model
    monkeypatch.setattr(adapters, "get_peft_model", lambda model, config: quantized.append(
        sum(isinstance(m, bnb.nn.Linear4bit) for m in model.modules())) or original(model, config))
    out = tmp_path / "lora4"
    summary = finetune.train(base_model=tiny_model, data_path=train_file, output_dir=str(out), max_steps=3,
                             save_steps=3, **{**FAST, "load_8bit": False, "load_4bit": True})
    assert quantized[0] >= 14, "every linear layer of both blocks is 4-bit"  # 7 per Llama block
    assert summary["global_step"] == 3
    lora_b = [v for k, v in load_file(str(out / "adapter_model.safetensors")).items() if "lora_B" in k]
    assert lora_b and all(torch.count_nonzero(v) > 0 for v in lora_b)
    assert json.loads((out / "cornucopia.json").read_text())["load_4bit"] is True


def test_resume_from_checkpoint_continues_as_the_uninterrupted_run(tiny_model, train_file, tmp_path, monkeypatch):
    """Resume from checkpoint-4 of a 6-step run: steps 5-6 must match the uninterrupted run's steps 5-6."""
    import shutil

    import transformers
    from safetensors.torch import load_file

    out = tmp_path / "lora"
    finetune.train(base_model=tiny_model, data_path=train_file, output_dir=str(out), max_steps=6, save_steps=2, **FAST)
    uninterrupted = logged_losses(out)
    reference = load_file(str(out / "adapter_model.safetensors"))
    # As if the run had been killed after checkpoint-4: remove what came after, resume with the same flags.
    shutil.rmtree(out / "checkpoint-6")
    (out / "adapter_model.safetensors").unlink()
    calls = []
    original = transformers.Trainer.training_step
    monkeypatch.setattr(transformers.Trainer, "training_step",
                        lambda self, *a, **k: calls.append(1) or original(self, *a, **k))
    summary = finetune.train(base_model=tiny_model, data_path=train_file, output_dir=str(out), max_steps=6,
                             save_steps=2, resume_from_checkpoint=True, **FAST)
    assert len(calls) == 2, "a resumed run must only do the steps after the checkpoint"
    assert summary["global_step"] == 6
    resumed = logged_losses(out)  # steps 1-4 reloaded from checkpoint-4, steps 5-6 computed after the resume
    assert resumed[4:] == pytest.approx(uninterrupted[4:], abs=1e-5) and len(resumed) == 6
    saved = load_file(str(out / "adapter_model.safetensors"))
    assert all(torch.allclose(saved[k], reference[k], atol=1e-5) for k in reference)


def test_resume_from_a_folder_that_is_not_a_checkpoint(tiny_model, train_file, tmp_path):
    from utils.training import TrainingError

    with pytest.raises(TrainingError, match="not a Trainer checkpoint"):
        finetune.train(base_model=tiny_model, data_path=train_file, output_dir=str(tmp_path / "o"),
                       resume_from_checkpoint=str(tmp_path), **FAST)


def test_validation_loss_picks_the_checkpoint_that_is_saved(tiny_model, train_file, tmp_path, monkeypatch):
    """Force the best validation loss at step 2 of 6: the saved adapter must be checkpoint-2's, not the last one.

    The evaluations at steps 4 and 6 are made worse by adding 10 and 20 to the loss the Trainer computed (the
    final evaluation of the reloaded best model is left as it is); the Trainer must then keep and reload step 2.
    """
    import transformers
    from safetensors.torch import load_file

    original, penalties = transformers.Trainer.evaluation_loop, iter([0.0, 10.0, 20.0])

    def evaluation_loop(self, *args, **kwargs):
        output = original(self, *args, **kwargs)
        output.metrics["eval_loss"] += next(penalties, 0.0)
        return output

    monkeypatch.setattr(transformers.Trainer, "evaluation_loop", evaluation_loop)
    out = tmp_path / "o"
    summary = finetune.train(base_model=tiny_model, data_path=train_file, output_dir=str(out),
                             val_set_size=2, max_steps=6, save_steps=2, eval_steps=2, **FAST)
    state = json.loads((out / "checkpoint-6" / "trainer_state.json").read_text())
    evals = {e["step"]: e["eval_loss"] for e in state["log_history"] if "eval_loss" in e}
    assert sorted(evals) == [2, 4, 6] and min(evals, key=evals.get) == 2
    assert state["best_model_checkpoint"].endswith("checkpoint-2")
    assert summary["eval_loss"] == pytest.approx(evals[2], abs=1e-4)  # the reloaded best model, evaluated again
    saved = load_file(str(out / "adapter_model.safetensors"))
    best = load_file(str(out / "checkpoint-2" / "adapter_model.safetensors"))
    last = load_file(str(out / "checkpoint-6" / "adapter_model.safetensors"))
    assert all(torch.equal(saved[k], best[k]) for k in saved)
    assert not all(torch.equal(saved[k], last[k]) for k in saved)


@pytest.mark.parametrize("case, expected", [
    ("jsonl_with_text_line", ["line 2", "not valid JSON"]),
    ("missing_output", ["record 2", "'output'"]),
    ("empty", ["empty"]),
    ("val_too_big", ["--val_set_size 50"]),
    ("unknown_template", ["Unknown prompt template", "fin_template"]),
    ("missing_base", ["does not exist"]),
])
def test_bad_input_is_one_clear_error(tiny_model, tmp_path, case, expected):
    data = tmp_path / "data.json"
    data.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in RECORDS[:3]), encoding="utf-8")
    args = ["--base_model", tiny_model, "--data_path", data, "--output_dir", tmp_path / "out", "--load_8bit", "False"]
    if case == "jsonl_with_text_line":
        data.write_text(json.dumps(RECORDS[0], ensure_ascii=False) + "\n{在这里放你的数据}\n", encoding="utf-8")
    elif case == "missing_output":
        write_json(data, [RECORDS[0], {"instruction": "q"}])
    elif case == "empty":
        data.write_text("", encoding="utf-8")
    elif case == "val_too_big":
        args += ["--val_set_size", "50"]
    elif case == "unknown_template":
        args += ["--prompt_template_name", "nope"]
    elif case == "missing_base":
        args[1] = tmp_path / "no-model"
    done = run_script("finetune.py", *args, timeout=120)
    assert done.returncode == 1
    assert done.stderr.strip().splitlines()[-1].startswith("error: ")
    assert "Traceback" not in done.stderr
    for part in expected:
        assert part in done.stderr
    assert not (tmp_path / "out" / "adapter_model.safetensors").exists()


def test_wandb_logs_offline_only_when_a_project_is_given(tiny_model, train_file, tmp_path):
    common = ["finetune.py", "--base_model", tiny_model, "--data_path", train_file, "--load_8bit", "False",
              "--max_steps", "2", "--micro_batch_size", "2", "--batch_size", "2", "--cutoff_len", "128"]
    env = {"WANDB_MODE": "offline", "WANDB_DIR": str(tmp_path / "wb")}
    (tmp_path / "wb").mkdir()
    done = run_script(*common, "--output_dir", tmp_path / "plain", env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    assert not list((tmp_path / "wb").rglob("*.wandb"))
    done = run_script(*common, "--output_dir", tmp_path / "logged", "--wandb_project", "cornucopia-test",
                      "--wandb_run_name", "tiny", env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    (run_file,) = list((tmp_path / "wb").rglob("offline-run-*/*.wandb"))
    history = [h for h in wandb_history(run_file) if "train/loss" in h]
    assert history and history[0]["train/global_step"] == 1
    assert all(0 < h["train/loss"] < 20 for h in history), history


def wandb_history(path):
    """The history rows of an offline wandb run file: a 7-byte header, then LevelDB-log blocks of protobuf Records."""
    import struct

    from wandb.proto import wandb_internal_pb2 as pb

    data, pos, block, chunks, rows = path.read_bytes(), 7, 32768, b"", []
    while pos + 7 <= len(data):
        left = block - pos % block
        if left < 7:  # a block's tail too short for a header is padding
            pos += left
            continue
        _, length, kind = struct.unpack("<IHB", data[pos:pos + 7])
        if length == 0 and kind == 0:
            pos += left
            continue
        chunks, pos = chunks + data[pos + 7:pos + 7 + length], pos + 7 + length
        if kind in (1, 4):  # FULL or LAST chunk: one whole record
            record = pb.Record()
            record.ParseFromString(chunks)
            chunks = b""
            if record.WhichOneof("record_type") == "history":
                rows.append({i.key or "/".join(i.nested_key): json.loads(i.value_json) for i in record.history.item})
    return rows


def test_an_empty_or_partial_adapter_file_is_refused(tiny_model, train_file, tmp_path):
    """The ancestors' 443-byte adapters: a saved file that lacks the trained tensors must not pass."""
    from safetensors.torch import load_file, save_file

    from utils.adapters import AdapterError, attach_lora, verify_saved_adapter
    from utils.loading import load_base_model

    model = attach_lora(load_base_model(tiny_model))
    model.save_pretrained(tmp_path)
    assert verify_saved_adapter(model, tmp_path, trained=False) > 0
    path = tmp_path / "adapter_model.safetensors"
    tensors = load_file(str(path))
    first = sorted(tensors)[0]
    save_file({first: tensors[first]}, str(path))
    with pytest.raises(AdapterError, match="holds 1 tensors"):
        verify_saved_adapter(model, tmp_path, trained=False)
    save_file({k: v + 1 for k, v in tensors.items()}, str(path))
    with pytest.raises(AdapterError, match="differs from the trained model"):
        verify_saved_adapter(model, tmp_path, trained=False)
    path.write_bytes(b"")
    with pytest.raises(AdapterError, match="not written"):
        verify_saved_adapter(model, tmp_path, trained=False)


def test_recipe_flags_all_linear_schedule_neftune_and_every_checkpoint_kept(tiny_model, train_file, tmp_path):
    """The knobs the recipe sweep turns reach the model and the Trainer, and the run info records them."""
    out = tmp_path / "lora"
    finetune.train(base_model=tiny_model, data_path=train_file, output_dir=str(out), max_steps=4, save_steps=1,
                   save_total_limit=0, lora_target_modules="all-linear", lora_r=4, lora_alpha=8, lora_dropout=0.0,
                   lr_scheduler_type="constant", neftune_noise_alpha=5.0, warmup_steps=0, **FAST)
    info = json.loads((out / "cornucopia.json").read_text())
    names = {name.rsplit(".", 1)[-1] for name in info["lora_target_modules"]}
    assert names == {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}  # not lm_head
    assert (info["lora_dropout"], info["lr_scheduler_type"], info["neftune_noise_alpha"]) == (0.0, "constant", 5.0)
    assert sorted(p.name for p in out.glob("checkpoint-*")) == [f"checkpoint-{k}" for k in range(1, 5)]
    history = json.loads((out / "checkpoint-4" / "trainer_state.json").read_text())["log_history"]
    rates = [e["learning_rate"] for e in history if "learning_rate" in e]
    assert rates == [FAST["learning_rate"]] * 4  # constant, no warm-up
    # the Trainer's clock is in every log line: the sweep draws its curves against it
    assert all(e["train_runtime"] > 0 for e in history if "loss" in e)
    # NEFTune adds noise to the embeddings while training: the same seed without it learns other weights
    plain = tmp_path / "plain"
    finetune.train(base_model=tiny_model, data_path=train_file, output_dir=str(plain), max_steps=4, save_steps=4,
                   lora_target_modules="all-linear", lora_r=4, lora_alpha=8, lora_dropout=0.0,
                   lr_scheduler_type="constant", warmup_steps=0, **FAST)
    from safetensors.torch import load_file

    noisy, quiet = load_file(out / "adapter_model.safetensors"), load_file(plain / "adapter_model.safetensors")
    assert any(not torch.equal(noisy[k], quiet[k]) for k in quiet)


def test_the_quickstart_length_turns_gradient_checkpointing_on_and_still_learns(tiny_model, train_file, tmp_path):
    """cutoff 1280 x micro-batch 4 is over the automatic threshold (utils/hardware.py): checkpointing is on by
    default there, and the run learns as one without it."""
    from utils.hardware import CHECKPOINTING_TOKENS

    assert 1280 * 4 >= CHECKPOINTING_TOKENS
    out = tmp_path / "lora"
    finetune.train(base_model=tiny_model, data_path=train_file, output_dir=str(out), load_8bit=False,
                   micro_batch_size=4, batch_size=4, learning_rate=1e-2, cutoff_len=1280, max_steps=12, save_steps=12,
                   logging_steps=1, lora_dropout=0.0)
    assert json.loads((out / "cornucopia.json").read_text())["gradient_checkpointing"] is True
    losses = logged_losses(out)
    assert sum(losses[-3:]) / 3 < 0.9 * sum(losses[:3]) / 3, losses
    plain = tmp_path / "plain"
    finetune.train(base_model=tiny_model, data_path=train_file, output_dir=str(plain), load_8bit=False,
                   micro_batch_size=4, batch_size=4, learning_rate=1e-2, cutoff_len=1280, max_steps=12, save_steps=12,
                   logging_steps=1, lora_dropout=0.0, gradient_checkpointing=False)
    assert logged_losses(plain) == pytest.approx(losses, rel=1e-4)  # recomputation changes nothing but memory
