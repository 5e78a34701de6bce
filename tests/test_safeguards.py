"""Faults during training (utils/safeguards.py): NaN loss, SIGTERM / Ctrl-C, cut-off checkpoints, a full disk."""
import json
import logging
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import finetune
from conftest import ROOT
from utils import safeguards
from utils.training import TrainingError

FAST = dict(load_8bit=False, micro_batch_size=2, batch_size=2, learning_rate=1e-2, cutoff_len=128, logging_steps=1,
            warmup_steps=0)


def count_training_steps(monkeypatch) -> list:
    import transformers

    calls, original = [], transformers.Trainer.training_step
    monkeypatch.setattr(transformers.Trainer, "training_step",
                        lambda self, *a, **k: calls.append(self.state.global_step) or original(self, *a, **k))
    return calls


def test_nan_loss_stops_at_that_step_and_names_the_last_good_checkpoint(tiny_model, train_file, tmp_path,
                                                                         monkeypatch):
    """An injected NaN loss at step 6 stops the run in that step: no checkpoint-6, no adapter, a clear message.

    (A learning rate of 1e3, or even 1e15, does not make this model's loss NaN: Adam's steps are bounded and the
    RMS norms rescale, so the test injects the NaN, as a broken fp16 kernel or a bad record would.)
    """
    from utils.training import CornucopiaTrainer  # the Trainer finetune.py builds (its own compute_loss)

    original, injected = CornucopiaTrainer.compute_loss, {}

    def compute_loss(self, model, inputs, *args, **kwargs):
        loss = original(self, model, inputs, *args, **kwargs)
        if self.state.global_step == 5:  # the 6th step
            injected.setdefault("at", time.perf_counter())
            loss = loss * float("nan")
        return loss

    monkeypatch.setattr(CornucopiaTrainer, "compute_loss", compute_loss)
    out = tmp_path / "o"
    with pytest.raises(safeguards.TrainingFault) as caught:
        finetune.train(base_model=tiny_model, data_path=train_file, output_dir=str(out), max_steps=20,
                       save_steps=2, **FAST)
    seconds_to_stop = time.perf_counter() - injected["at"]
    message = str(caught.value)
    assert "NaN/inf at step 6" in message
    assert "--learning_rate (now 0.01" in message and "fp32" in message and "data" in message
    assert f"last good checkpoint is {out / 'checkpoint-4'}" in message
    assert sorted(p.name for p in out.glob("checkpoint-*")) == ["checkpoint-2", "checkpoint-4"]
    assert not (out / "adapter_model.safetensors").exists() and not (out / "cornucopia.json").exists()
    safeguards.check_checkpoint(out / "checkpoint-4")
    assert seconds_to_stop < 5, seconds_to_stop  # the same step, not hours later
    print(f"NaN injected -> stopped in {seconds_to_stop:.2f} s")


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_sigterm_or_ctrl_c_saves_a_checkpoint_and_says_how_to_resume(tiny_model, train_file, tmp_path, sig):
    out = tmp_path / "o"
    log = tmp_path / "stdout.txt"
    cmd = [sys.executable, "finetune.py", "--base_model", tiny_model, "--data_path", train_file, "--output_dir",
           str(out), "--load_8bit", "False", "--micro_batch_size", "2", "--batch_size", "2", "--cutoff_len", "128",
           "--max_steps", "500", "--save_steps", "1000", "--logging_steps", "1"]
    with log.open("w") as stdout:
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=stdout, stderr=subprocess.PIPE, text=True)
        deadline = time.time() + 120
        while log.read_text().count("'loss'") < 3 and time.time() < deadline and proc.poll() is None:
            time.sleep(0.2)
        proc.send_signal(sig)
        _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 1, stderr[-2000:]
    assert "Traceback" not in stderr
    last = stderr.strip().splitlines()[-1]
    assert last.startswith(f"error: training stopped by {sig.name} at step "), last
    step = int(last.split(" at step ")[1].split()[0])
    folder = out / f"checkpoint-{step}"
    assert f"checkpoint saved in {folder}" in last
    assert "--resume_from_checkpoint True" in last and "finetune.py" in last
    safeguards.check_checkpoint(folder)
    assert not (out / "adapter_model.safetensors").exists()  # a stopped run is not a result
    summary = finetune.train(base_model=tiny_model, data_path=train_file, output_dir=str(out), max_steps=step + 2,
                             resume_from_checkpoint=True, **FAST)
    assert summary["global_step"] == step + 2


@pytest.fixture(scope="module")
def trained_once(tiny_model, tmp_path_factory):
    from conftest import RECORDS, write_json

    root = tmp_path_factory.mktemp("trained")
    out = root / "o"
    finetune.train(base_model=tiny_model, data_path=str(write_json(root / "train.json", RECORDS)),
                   output_dir=str(out), max_steps=4, save_steps=2, **FAST)
    return out


@pytest.fixture()
def two_checkpoints(trained_once, tmp_path):
    """A fresh copy of a 4-step run's output (checkpoint-2, checkpoint-4, adapter) for each test to damage."""
    import shutil

    return Path(shutil.copytree(trained_once, tmp_path / "o"))


@pytest.mark.parametrize("victim", ["adapter_model.safetensors", "optimizer.pt", "trainer_state.json",
                                    "rng_state.pth"])
def test_a_cut_off_file_is_detected(two_checkpoints, victim):
    folder = two_checkpoints / "checkpoint-4"
    safeguards.check_checkpoint(folder)
    path = folder / victim
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(safeguards.TrainingFault, match=victim):
        safeguards.check_checkpoint(folder)


def test_resume_falls_back_from_a_cut_off_checkpoint(two_checkpoints, tiny_model, train_file, monkeypatch, caplog):
    out = two_checkpoints
    optimizer = out / "checkpoint-4" / "optimizer.pt"
    optimizer.write_bytes(optimizer.read_bytes()[:1000])
    steps = count_training_steps(monkeypatch)
    with caplog.at_level(logging.WARNING):
        summary = finetune.train(base_model=tiny_model, data_path=train_file, output_dir=str(out), max_steps=6,
                                 save_steps=2, resume_from_checkpoint=True, **FAST)
    warning = next(r.getMessage() for r in caplog.records if "is incomplete" in r.getMessage())
    assert str(out / "checkpoint-4") in warning and "optimizer.pt" in warning
    assert steps == [2, 3, 4, 5], "resumed from checkpoint-2, the last complete one"
    assert summary["global_step"] == 6
    assert (out / "broken-checkpoint-4" / "optimizer.pt").stat().st_size == 1000  # kept aside, not deleted
    safeguards.check_checkpoint(out / "checkpoint-4")  # written again, complete


def test_resume_from_a_named_cut_off_checkpoint_is_refused(two_checkpoints, tiny_model, train_file):
    adapter = two_checkpoints / "checkpoint-2" / "adapter_model.safetensors"
    adapter.write_bytes(adapter.read_bytes()[:-10])
    with pytest.raises(TrainingError, match="checkpoint-2.*incomplete.*adapter_model.safetensors"):
        finetune.train(base_model=tiny_model, data_path=train_file, output_dir=str(two_checkpoints), max_steps=6,
                       resume_from_checkpoint=str(two_checkpoints / "checkpoint-2"), **FAST)


def mount_small_disk(mount) -> str:
    """Mount a 200 KiB tmpfs on MOUNT; '' when done, else why it could not be."""
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=200k", "tmpfs", str(mount)], capture_output=True,
                          text=True)
    return "" if done.returncode == 0 else (done.stderr.strip() or "mount failed")


def test_a_full_disk_names_the_folder_and_keeps_the_previous_checkpoint(tiny_model, train_file, tmp_path):
    """A 200 KiB tmpfs: room for one checkpoint of the tiny model (about 124 KiB in pages), not two.

    Mounting needs root or CAP_SYS_ADMIN; without them the test runs itself again inside a user namespace where
    the user is root (unshare --user --map-root-user --mount), so it is not skipped on a developer's machine."""
    import os
    import sys

    mount = tmp_path / "disk"
    mount.mkdir()
    why = mount_small_disk(mount)
    if why:
        if os.environ.get("CORNUCOPIA_IN_NAMESPACE"):
            pytest.fail(f"cannot mount a tmpfs even inside a user namespace: {why}")
        here = f"{__file__}::test_a_full_disk_names_the_folder_and_keeps_the_previous_checkpoint"
        done = subprocess.run(["unshare", "--user", "--map-root-user", "--mount", sys.executable, "-m", "pytest",
                               "-q", here], capture_output=True, text=True,
                              env={**os.environ, "CORNUCOPIA_IN_NAMESPACE": "1"})
        if "unshare:" in done.stderr and done.returncode != 0 and "passed" not in done.stdout:
            pytest.skip(f"cannot mount a size-limited tmpfs ({why}) and user namespaces are off here: "
                        f"{done.stderr.strip()[:200]}")
        assert done.returncode == 0 and "1 passed" in done.stdout, done.stdout[-3000:] + done.stderr[-2000:]
        return
    try:
        out = mount / "o"
        with pytest.raises(safeguards.TrainingFault) as caught:
            finetune.train(base_model=tiny_model, data_path=train_file, output_dir=str(out), max_steps=6,
                           save_steps=2, **FAST)
        message = str(caught.value)
        assert message.startswith(f"no space left on the disk of {out} while saving checkpoint-4")
        needed = int(message.split("needs about ")[1].split(" bytes")[0].replace(",", ""))
        assert needed == safeguards.folder_bytes(out / "checkpoint-2") > 50_000
        assert f"previous checkpoint {out / 'checkpoint-2'} is intact" in message
        safeguards.check_checkpoint(out / "checkpoint-2")
        assert not (out / "checkpoint-4").exists() and not (out / "adapter_model.safetensors").exists()
    finally:
        subprocess.run(["umount", "--lazy", str(mount)], check=False)  # lazy: the failed save may hold a file open


def test_a_complete_checkpoint_passes_and_json_step_must_match(two_checkpoints):
    folder = two_checkpoints / "checkpoint-2"
    safeguards.check_checkpoint(folder)
    state = json.loads((folder / "trainer_state.json").read_text())
    state["global_step"] = 7
    (folder / "trainer_state.json").write_text(json.dumps(state))
    with pytest.raises(safeguards.TrainingFault, match="records step 7, not 2"):
        safeguards.check_checkpoint(folder)


def test_a_finished_adapter_is_not_overwritten_unless_asked(tiny_model, train_file, tmp_path):
    out = tmp_path / "o"
    finetune.train(base_model=tiny_model, data_path=train_file, output_dir=str(out), max_steps=2, **FAST)
    adapter = (out / "adapter_model.safetensors").read_bytes()
    with pytest.raises(safeguards.TrainingFault, match=f"{out} already holds a finished adapter.*--overwrite True"):
        finetune.train(base_model=tiny_model, data_path=train_file, output_dir=str(out), max_steps=2, **FAST)
    assert (out / "adapter_model.safetensors").read_bytes() == adapter
    summary = finetune.train(base_model=tiny_model, data_path=train_file, output_dir=str(out), max_steps=2,
                             overwrite=True, **{**FAST, "learning_rate": 5e-2})
    assert summary["global_step"] == 2 and (out / "adapter_model.safetensors").read_bytes() != adapter


def test_a_save_cut_off_midway_leaves_no_adapter_that_looks_done(tiny_model, train_file, tmp_path, monkeypatch):
    """The adapter is written and checked in output_dir/.saving, then renamed in: a crash before that leaves nothing."""
    from utils import training

    def crash(*args, **kwargs):
        raise KeyboardInterrupt("killed while saving")

    monkeypatch.setattr(training, "write_run_info", crash)
    out = tmp_path / "o"
    with pytest.raises(KeyboardInterrupt):
        finetune.train(base_model=tiny_model, data_path=train_file, output_dir=str(out), max_steps=2, **FAST)
    assert not (out / "adapter_model.safetensors").exists() and not (out / "cornucopia.json").exists()
    assert not (out / ".saving").exists()
    safeguards.check_checkpoint(out / "checkpoint-2")  # what the run did is kept for a resume


def test_a_checkpoint_cut_off_mid_save_never_looks_complete(tiny_model, train_file, tmp_path, monkeypatch):
    """The Trainer saves checkpoint-N into .saving-checkpoint/ and renames it: a crash mid-save leaves no checkpoint-N."""
    import transformers

    original = transformers.Trainer._save_rng_state

    def crash_at_step_4(self, output_dir):
        if self.state.global_step == 4:
            raise KeyboardInterrupt("killed while saving checkpoint-4")
        return original(self, output_dir)

    monkeypatch.setattr(transformers.Trainer, "_save_rng_state", crash_at_step_4)
    out = tmp_path / "o"
    with pytest.raises(KeyboardInterrupt):
        finetune.train(base_model=tiny_model, data_path=train_file, output_dir=str(out), max_steps=6, save_steps=2,
                       **FAST)
    assert sorted(p.name for p in out.glob("checkpoint-*")) == ["checkpoint-2"]
    safeguards.check_checkpoint(out / "checkpoint-2")
    assert (out / safeguards.STAGING / "checkpoint-4" / "adapter_model.safetensors").is_file()  # the half save
    monkeypatch.undo()
    summary = finetune.train(base_model=tiny_model, data_path=train_file, output_dir=str(out), max_steps=12,
                             save_steps=2, resume_from_checkpoint=True, **FAST)
    assert summary["global_step"] == 12 and not (out / safeguards.STAGING).exists()
    # save_total_limit 3 still rotates the renamed folders
    assert sorted(p.name for p in out.glob("checkpoint-*")) == ["checkpoint-10", "checkpoint-12", "checkpoint-8"]
