"""Two-process DDP on CPU (gloo), through torchrun as a user would run it."""
import json
from conftest import run_script


def test_two_process_ddp_run(tiny_model, train_file, tmp_path):
    out = tmp_path / "ddp"
    done = run_script(
        "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "finetune.py",
        "--base_model", tiny_model, "--data_path", train_file, "--output_dir", out, "--load_8bit", "False",
        "--micro_batch_size", "2", "--batch_size", "4", "--max_steps", "3", "--save_steps", "3",
        "--cutoff_len", "128", "--logging_steps", "1", "--val_set_size", "2", "--eval_steps", "3",
        env={"OMP_NUM_THREADS": "1"}, timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert (out / "adapter_model.safetensors").stat().st_size > 1000
    state = json.loads((out / "checkpoint-3" / "trainer_state.json").read_text())
    assert state["global_step"] == 3
    assert json.loads((out / "train_summary.json").read_text())["eval_loss"] > 0
    # batch_size 4 = 2 processes x micro-batch 2, so no gradient accumulation.
    assert "DDP: 2 processes, backend gloo, 1 gradient accumulation step(s) each" in done.stderr
