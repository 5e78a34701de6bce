"""Kill -9 a training run of the embedded default base and resume it: the same batches, steps and losses.

The run is recorded by a thin wrapper around Trainer.training_step that appends, per optimizer step,
a hash of the batch's token ids and its loss to a JSON-lines file (flushed at once, so a SIGKILL
loses nothing that was written).
"""
import json
import os
import random
import signal
import subprocess
import sys
import time

from safetensors.torch import load_file

from conftest import RECORDS, ROOT, write_json
from utils import safeguards

RECORDER = """
import hashlib, json, sys
import transformers
sys.path.insert(0, sys.argv[1])
log = open(sys.argv[2], "a")
original = transformers.Trainer.training_step
def recorded(self, model, inputs, *args, **kwargs):
    loss = original(self, model, inputs, *args, **kwargs)
    batch = hashlib.sha256(inputs["input_ids"].cpu().numpy().tobytes()).hexdigest()[:16]
    log.write(json.dumps({"step": self.state.global_step + 1, "batch": batch, "loss": loss.item()}) + "\\n")
    log.flush()
    return loss
transformers.Trainer.training_step = recorded
import finetune
from utils.cli import run
sys.argv = ["finetune.py", *sys.argv[3:]]
run(finetune.train)
"""

MAX_STEPS, SAVE_STEPS = 8, 2
# Per-step loss tolerance. On one CPU with the same thread count the kernels are deterministic and the resume
# restores everything a step depends on exactly: LoRA weights (float32 safetensors), Adam's moments, the
# schedule's position, the sampler's seed and epoch, and the RNG that draws the dropout masks. The
# losses then agree to the last bit (measured: 0.0); 1e-4 leaves room only for a different order of
# float summation between runs, far below a changed batch (losses differ by > 0.1) or a lost optimizer state.
LOSS_TOLERANCE = 1e-4


def recorded_run(smollm2, data, out, log, extra=()):
    args = ["--base_model", smollm2, "--data_path", data, "--output_dir", out, "--load_8bit", "False",
            "--micro_batch_size", "1", "--batch_size", "1", "--cutoff_len", "64", "--prompt_template_name", "ori_template", "--max_steps", str(MAX_STEPS),
            "--save_steps", str(SAVE_STEPS), "--logging_steps", "1", "--warmup_steps", "0",
            "--learning_rate", "1e-3", "--seed", "7", "--bf16", "False", *extra]
    return [sys.executable, "-c", RECORDER, str(ROOT), str(log), *map(str, args)]


def read_log(path):
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_sigkill_then_resume_matches_an_uninterrupted_run(smollm2, tmp_path):
    data = write_json(tmp_path / "train.json", RECORDS)
    env = {**os.environ, "WANDB_MODE": "disabled"}

    # Uninterrupted reference.
    ref_log = tmp_path / "ref.jsonl"
    done = subprocess.run(recorded_run(smollm2, data, tmp_path / "ref", ref_log), cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    reference = read_log(ref_log)
    assert [r["step"] for r in reference] == list(range(1, MAX_STEPS + 1))

    # The same run, killed with SIGKILL at a random step after the first checkpoint.
    kill_at = random.Random(time.time_ns()).randint(SAVE_STEPS + 1, MAX_STEPS - 2)
    out, log = tmp_path / "run", tmp_path / "run.jsonl"
    log.touch()
    proc = subprocess.Popen(recorded_run(smollm2, data, out, log), cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while len(read_log(log)) < kill_at and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    killed_after = len(read_log(log))
    assert killed_after >= kill_at and not (out / "adapter_model.safetensors").exists()
    resume_from = safeguards.latest_complete_checkpoint(out, move_broken=False)
    assert resume_from is not None, "the first checkpoint was written before the kill"
    resumed_step = safeguards.checkpoint_step(resume_from)

    # Resume.
    resume_log = tmp_path / "resume.jsonl"
    done = subprocess.run(recorded_run(smollm2, data, out, resume_log, ["--resume_from_checkpoint", "True"]),
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    resumed = read_log(resume_log)
    after = reference[resumed_step:]
    assert [r["step"] for r in resumed] == [r["step"] for r in after], "only the steps after the checkpoint"
    assert [r["batch"] for r in resumed] == [r["batch"] for r in after], "the same data order after the resume"
    differences = [abs(a["loss"] - b["loss"]) for a, b in zip(resumed, after)]
    assert max(differences) <= LOSS_TOLERANCE, differences
    summary = json.loads((out / "train_summary.json").read_text())
    assert summary["global_step"] == MAX_STEPS
    final, ref_final = load_file(str(out / "adapter_model.safetensors")), load_file(
        str(tmp_path / "ref" / "adapter_model.safetensors"))
    weight_difference = max((final[k] - ref_final[k]).abs().max().item() for k in ref_final)
    assert weight_difference <= 1e-4
    print(f"killed after step {killed_after} (aimed at {kill_at}), resumed from {resume_from}; "
          f"max loss difference {max(differences):.2e} over {len(resumed)} steps, final loss "
          f"{resumed[-1]['loss']:.4f} vs {after[-1]['loss']:.4f}; max adapter weight difference {weight_difference:.2e}")
