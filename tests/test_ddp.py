"""Two-process DDP on CPU (gloo), through torchrun as a user would run it."""
import json

import finetune
from conftest import RECORDS, run_script, write_json

# Gradients are synchronised if 2 processes x micro-batch 2 end where 1 process x 2 accumulated micro-batches of 2
# ends: both see the same 4 records per step (the sampler's seeded order, cut into consecutive micro-batches).
# Only the order of float additions differs (gloo's all-reduce vs local accumulation): ~1e-7 on the gradients.
# Adam's first steps move each weight by about +-lr whatever the gradient's size, so an unsynchronised run
# (each process stepping on its own 2 records) would differ by ~lr = 3e-4; 2e-5 separates the two by 15x.
WEIGHT_TOLERANCE = 2e-5


def test_two_process_ddp_run(tiny_model, tmp_path):
    # 10 records - 2 for validation = 8: whole global batches of 4, so no process pads an epoch's last batch
    # with repeated records (which would make the runs differ for a reason other than synchronisation).
    extra = [{"instruction": "什么是国债？", "input": "", "output": "国债是国家发行的债券，以国家信用为担保。"},
             {"instruction": "什么是ETF？", "input": "", "output": "ETF是在交易所上市交易的开放式指数基金。"}]
    train_file = write_json(tmp_path / "train.json", RECORDS + extra)
    out = tmp_path / "ddp"
    done = run_script(
        "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "finetune.py",
        "--base_model", tiny_model, "--data_path", train_file, "--output_dir", out, "--load_8bit", "False",
        "--micro_batch_size", "2", "--batch_size", "4", "--max_steps", "3", "--save_steps", "3",
        "--cutoff_len", "128", "--logging_steps", "1", "--val_set_size", "2", "--eval_steps", "3",
        "--bf16", "False",  # compared to 2e-5 with the single-process run: float32 on any CPU
        "--lora_dropout", "0",  # dropout masks come from each process's own RNG; without it the runs can be compared
        env={"OMP_NUM_THREADS": "1"}, timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert (out / "adapter_model.safetensors").stat().st_size > 1000
    state = json.loads((out / "checkpoint-3" / "trainer_state.json").read_text())
    assert state["global_step"] == 3
    assert json.loads((out / "train_summary.json").read_text())["eval_loss"] > 0
    # batch_size 4 = 2 processes x micro-batch 2, so no gradient accumulation.
    assert "DDP: 2 processes, backend gloo, 1 gradient accumulation step(s) each" in done.stderr
    # the label-position head is off under DDP (the wrapped forward must run), and the log says so
    assert "LM head on label positions only: off, the model is wrapped for DistributedDataParallel" in done.stderr

    # The same global batch in one process: gradients of the DDP run were averaged across both processes.
    import torch
    from safetensors.torch import load_file

    single = tmp_path / "single"
    finetune.train(base_model=tiny_model, data_path=str(train_file), output_dir=str(single), load_8bit=False,
                   micro_batch_size=2, batch_size=4, max_steps=3, save_steps=3, cutoff_len=128, logging_steps=1,
                   val_set_size=2, eval_steps=3, lora_dropout=0.0, bf16=False)
    ddp_weights = load_file(str(out / "adapter_model.safetensors"))
    one_weights = load_file(str(single / "adapter_model.safetensors"))
    difference = max((ddp_weights[k] - one_weights[k]).abs().max().item() for k in one_weights)
    moved = max(one_weights[k].abs().max().item() for k in one_weights if "lora_B" in k)
    assert moved > 10 * WEIGHT_TOLERANCE and difference <= WEIGHT_TOLERANCE, (difference, moved)
    ddp_losses = [e["loss"] for e in state["log_history"] if "loss" in e]
    one_state = json.loads((single / "checkpoint-3" / "trainer_state.json").read_text())
    one_losses = [e["loss"] for e in one_state["log_history"] if "loss" in e]
    assert torch.allclose(torch.tensor(ddp_losses), torch.tensor(one_losses), atol=1e-4), (ddp_losses, one_losses)
    print(f"DDP vs 1 process: max adapter weight difference {difference:.2e}; losses {ddp_losses} vs {one_losses}")
