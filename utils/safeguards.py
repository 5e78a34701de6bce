"""Faults during training that must not cost the run: NaN losses, signals, cut-off checkpoints, a full disk.

utils/training.py wires these around `Trainer.train`:
- `LossGuard` stops at the first step whose loss or trainable weights are no longer finite, and says
  which step, which settings to check and which checkpoint is the last good one; nothing is saved after it.
- `StopOnSignal` turns SIGTERM / Ctrl-C into "save a checkpoint at the end of this step, then stop",
  and the run then says where the checkpoint is and how to resume.
- `latest_complete_checkpoint` checks every file of a checkpoint-N folder before a resume trusts it
  (safetensors headers against file lengths, zip archives of torch.save, JSON), moves a broken one aside
  and falls back to the one before it.
- `disk_full_error` recognises "no space left" under the libraries' own error types and names the
  folder and the bytes a checkpoint needs.
"""
from __future__ import annotations

import errno
import json
import logging
import math
import os
import re
import shutil
import signal
import struct
import threading
import zipfile
from pathlib import Path

import torch
from transformers import Trainer, TrainerCallback
from transformers.trainer_utils import rotate_checkpoints

from utils.errors import CornucopiaError

logger = logging.getLogger(__name__)

CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")
BROKEN_PREFIX = "broken-"
# Files a Trainer checkpoint of a LoRA run must hold to resume exactly (weights, optimizer, schedule, state).
REQUIRED_FILES = ("trainer_state.json", "optimizer.pt", "scheduler.pt")
WEIGHT_FILES = ("adapter_model.safetensors", "adapter_model.bin", "model.safetensors", "pytorch_model.bin")


class TrainingFault(CornucopiaError):
    """A training run that stopped (NaN loss, a signal, a full disk, a broken checkpoint); the message says what next."""


# ---------------------------------------------------------------- checkpoints

def checkpoint_step(path) -> int | None:
    match = CHECKPOINT.match(Path(path).name)
    return int(match.group(1)) if match else None


def checkpoints(output_dir) -> list[Path]:
    """checkpoint-N folders of output_dir, newest (highest N) first."""
    folder = Path(output_dir)
    if not folder.is_dir():
        return []
    found = [p for p in folder.iterdir() if p.is_dir() and checkpoint_step(p) is not None]
    return sorted(found, key=checkpoint_step, reverse=True)


def _check_safetensors(path: Path) -> None:
    """The 8-byte header length, the JSON header and the data length it promises must all be there."""
    size = path.stat().st_size
    with path.open("rb") as f:
        raw = f.read(8)
        if len(raw) < 8:
            raise ValueError(f"{size} bytes, shorter than a safetensors header")
        (header_len,) = struct.unpack("<Q", raw)
        if 8 + header_len > size:
            raise ValueError(f"header says {header_len} bytes but the file has {size}")
        header = json.loads(f.read(header_len))
    end = max((t["data_offsets"][1] for k, t in header.items() if k != "__metadata__"), default=0)
    if 8 + header_len + end != size:
        raise ValueError(f"tensors need {8 + header_len + end} bytes but the file has {size} (cut off)")


def _check_torch_archive(path: Path) -> None:
    """torch.save writes a zip archive with CRCs: a cut-off file loses its central directory, a damaged one its CRC."""
    with zipfile.ZipFile(path) as archive:
        bad = archive.testzip()
    if bad is not None:
        raise ValueError(f"member {bad} fails its checksum")


def check_checkpoint(folder) -> None:
    """Raise TrainingFault naming the first file of a checkpoint-N folder that is missing or does not load."""
    folder = Path(folder)
    missing = [name for name in REQUIRED_FILES if not (folder / name).is_file()]
    if not any((folder / name).is_file() for name in WEIGHT_FILES):
        missing.append(WEIGHT_FILES[0])
    if missing:
        raise TrainingFault(f"{folder}: missing {', '.join(missing)} (the save was cut off)")
    for path in sorted(folder.iterdir()):
        if not path.is_file():
            continue
        try:
            if path.stat().st_size == 0:
                raise ValueError("empty file")
            if path.suffix == ".safetensors":
                _check_safetensors(path)
            elif path.suffix in (".pt", ".pth", ".bin"):
                _check_torch_archive(path)
            elif path.suffix == ".json":
                json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError, zipfile.BadZipFile, struct.error, KeyError, TypeError) as err:
            raise TrainingFault(f"{path}: does not load ({type(err).__name__}: {err})") from err
    state = json.loads((folder / "trainer_state.json").read_text(encoding="utf-8"))
    step = checkpoint_step(folder)
    if step is not None and state.get("global_step") != step:
        raise TrainingFault(f"{folder / 'trainer_state.json'}: records step {state.get('global_step')}, not {step}")


def latest_complete_checkpoint(output_dir, before_step: int | None = None, move_broken: bool = True) -> str | None:
    """The newest checkpoint-N of output_dir whose files all load; broken newer ones are named and moved aside.

    A broken folder is renamed broken-checkpoint-N, so neither this run nor the Trainer's rotation takes it
    for a checkpoint, and nothing is deleted.
    """
    for folder in checkpoints(output_dir):
        if before_step is not None and checkpoint_step(folder) >= before_step:
            continue
        try:
            check_checkpoint(folder)
        except (TrainingFault, OSError) as fault:
            # Under DDP every process looks; only the first moves the broken folder aside.
            if not move_broken or os.environ.get("RANK", "0") != "0":
                continue
            aside = folder.with_name(BROKEN_PREFIX + folder.name)
            if aside.exists():
                shutil.rmtree(aside)
            folder.rename(aside)
            logger.warning("Checkpoint %s is incomplete: %s. Moved it to %s; falling back to the one before it.",
                           folder, fault, aside)
            continue
        return str(folder)
    return None


STAGING = ".saving-checkpoint"


class AtomicCheckpointTrainer(Trainer):
    """A Trainer whose checkpoint-N folders appear complete or not at all.

    transformers 5.23 writes checkpoint-N file by file in place, so a crash mid-save leaves a folder that looks
    like a checkpoint. Here the Trainer's own save runs into output_dir/.saving-checkpoint/checkpoint-N, which is
    then renamed to output_dir/checkpoint-N (atomic on one filesystem); the best-checkpoint pointer and the
    rotation (save_total_limit) are then applied to the real folder. Under DDP every process writes its own RNG
    file into the folder, so there the Trainer saves in place as usual (resume still checks every file).
    """

    def _save_checkpoint(self, model, trial):
        if self.args.world_size > 1:
            return super()._save_checkpoint(model, trial)
        run_dir = Path(self._get_output_dir(trial=trial))
        name = f"checkpoint-{self.state.global_step}"
        staging = run_dir / STAGING
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        self._get_output_dir = lambda trial=None: str(staging)  # the Trainer's save then writes into staging
        try:
            super()._save_checkpoint(model, trial)
        finally:
            del self._get_output_dir
        final = run_dir / name
        if final.exists():  # a broken leftover of an earlier run at the same step
            shutil.rmtree(final)
        os.replace(staging / name, final)
        shutil.rmtree(staging, ignore_errors=True)
        if self.state.best_global_step:
            best = run_dir / f"checkpoint-{self.state.best_global_step}"
            if best.is_dir():
                self.state.best_model_checkpoint = str(best)
                partial = final / ".trainer_state.json.partial"
                self.state.save_to_json(str(partial))
                os.replace(partial, final / "trainer_state.json")
        rotate_checkpoints(output_dir=str(run_dir), save_total_limit=self.args.save_total_limit,
                           best_model_checkpoint=self.state.best_model_checkpoint, use_mtime=False)


# ---------------------------------------------------------------- loss guard

class LossGuard(TrainerCallback):
    """Stop at the first step whose loss or trainable weights are NaN/inf, before anything is saved.

    The Trainer hides a NaN loss from its logs (logging_nan_inf_filter), but a NaN or inf loss makes
    NaN gradients and the optimizer writes them into the weights; checking the trainable weights at
    the end of every step (LoRA weights: cheap) catches it in the step it happens. Under fp16 loss
    scaling a step with inf gradients is skipped and the weights stay finite, so that is no fault.
    """

    def __init__(self, model):
        self.params = [p for p in model.parameters() if p.requires_grad]

    def on_step_end(self, args, state, control, **kwargs):
        if not all(torch.isfinite(p).all() for p in self.params):
            raise self.fault(args, state.global_step, "the trainable weights are no longer finite")

    def on_log(self, args, state, control, logs=None, **kwargs):
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(loss):
            raise self.fault(args, state.global_step, f"the logged loss is {loss}")

    @staticmethod
    def fault(args, step: int, what: str) -> TrainingFault:
        last = latest_complete_checkpoint(args.output_dir, before_step=step, move_broken=False)
        precision = "bf16" if args.bf16 else "fp16" if args.fp16 else "fp32"
        where = (f"The last good checkpoint is {last} (resume with --resume_from_checkpoint {last} after "
                 f"changing the settings)." if last else "No checkpoint was saved before it.")
        return TrainingFault(
            f"the loss became NaN/inf at step {step} ({what}); stopped without saving an adapter. "
            f"Check --learning_rate (now {args.learning_rate:g}: try 10x lower), the precision ({precision}: "
            f"fp16 overflows where bf16 or fp32 does not) and the data (empty or very long records). {where}"
        )


# ---------------------------------------------------------------- SIGTERM / Ctrl-C

class StopOnSignal(TrainerCallback):
    """SIGTERM or Ctrl-C: finish the current step, save a checkpoint, stop. A second signal stops at once."""

    SIGNALS = (signal.SIGTERM, signal.SIGINT)

    def __init__(self):
        self.received: str | None = None
        self.previous = {}

    def _handle(self, signum, frame):
        if self.received:  # a second signal: the user means it
            self.restore()
            signal.raise_signal(signum)
            return
        self.received = signal.Signals(signum).name
        logger.warning("%s received: saving a checkpoint at the end of this step, then stopping "
                       "(send it again to stop at once, without saving)", self.received)

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for sig in self.SIGNALS:
                self.previous[sig] = signal.signal(sig, self._handle)
        return self

    def restore(self):
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)
        self.previous = {}

    def __exit__(self, *exc):
        self.restore()
        return False

    def on_step_end(self, args, state, control, **kwargs):
        if self.received:
            control.should_save = True
            control.should_training_stop = True

    def raise_if_stopped(self, trainer, command_hint: str = "python finetune.py <the same flags>") -> None:
        """After Trainer.train returned: a run stopped by a signal before its last step is not a result."""
        state = trainer.state
        if not self.received or state.global_step >= state.max_steps:
            return
        folder = Path(trainer.args.output_dir) / f"checkpoint-{state.global_step}"
        raise TrainingFault(
            f"training stopped by {self.received} at step {state.global_step} of {state.max_steps}; "
            f"checkpoint saved in {folder}. Resume with: {command_hint} --resume_from_checkpoint True"
        )


# ---------------------------------------------------------------- full disk

def _error_chain(err: BaseException):
    seen = set()
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        yield err
        err = err.__cause__ or err.__context__


def is_disk_full(err: BaseException, folder, needed: int) -> bool:
    """ENOSPC anywhere in the chain, or any failure while the folder's disk has less room than a checkpoint needs.

    torch.save and safetensors rewrap the OS error ("iostream error", "unexpected pos"), so the free space
    decides when no ENOSPC is left in the chain.
    """
    for e in _error_chain(err):
        if isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        text = str(e).lower()
        if "no space left" in text or "disk quota" in text:
            return True
    try:
        return shutil.disk_usage(folder).free < needed
    except OSError:
        return False


def checkpoint_bytes(output_dir, step: int, trainable_bytes: int) -> int:
    """About what one checkpoint takes: the last complete one measures it, else weights plus Adam's two moments."""
    previous = latest_complete_checkpoint(output_dir, before_step=step, move_broken=False)
    return folder_bytes(previous) if previous else 3 * trainable_bytes + (1 << 16)


def folder_bytes(folder) -> int:
    return sum(p.stat().st_size for p in Path(folder).rglob("*") if p.is_file())


def disk_full_error(output_dir, step: int, needed: int) -> TrainingFault:
    """Remove the half-written checkpoint-STEP and say how much room one needs; older checkpoints are untouched."""
    partial = Path(output_dir) / f"checkpoint-{step}"
    previous = latest_complete_checkpoint(output_dir, before_step=step, move_broken=False)
    for folder in (partial, Path(output_dir) / STAGING):
        shutil.rmtree(folder, ignore_errors=True)
    free = shutil.disk_usage(output_dir).free if Path(output_dir).exists() else 0
    kept = f"the previous checkpoint {previous} is intact" if previous else "no earlier checkpoint exists"
    return TrainingFault(
        f"no space left on the disk of {output_dir} while saving checkpoint-{step}: a checkpoint needs about "
        f"{needed:,} bytes and {free:,} are free. Removed the partial checkpoint-{step}; {kept}. Free space or "
        f"choose another --output_dir, then resume with --resume_from_checkpoint True."
    )


# ---------------------------------------------------------------- a finished run is not overwritten by accident

def refuse_finished_output(output_dir, overwrite: bool, resuming: bool) -> None:
    """An output folder that already holds a finished adapter (its run info is written last) needs --overwrite True."""
    from utils.adapters import ADAPTER_FILE, RUN_INFO_FILE  # adapters imports the model stack; only needed here

    folder = Path(output_dir)
    if overwrite or resuming or not ((folder / RUN_INFO_FILE).is_file() and (folder / ADAPTER_FILE).is_file()):
        return
    raise TrainingFault(
        f"{folder} already holds a finished adapter ({ADAPTER_FILE}, {RUN_INFO_FILE}); choose another "
        f"--output_dir, or pass --overwrite True to replace it (--resume_from_checkpoint True goes on from its "
        f"checkpoints instead)"
    )
