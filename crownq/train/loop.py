"""train_model: the record's training loop, top to bottom.

priming (compile warm-up, then restore) -> resume if a checkpoint exists -> steps until the schedule
stops (LR scale, late QAT, CROWN-Q, EMA/SWA, validation, checkpoints, preemption) -> optional burst
steps (inside the cap) -> averaged weights -> pre-quantisation validation.
"""

from __future__ import annotations

import copy
import os
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from crownq.distributed import DistEnv
from crownq.log import logger
from crownq.model.recurrence import set_looping_for
from crownq.train import schedule
from crownq.train.averaging import WeightAverager
from crownq.train.checkpoint import checkpoint_path
from crownq.train.divergence import TrainingDiverged
from crownq.train.optim import Optimizers, muon_momentum_at
from crownq.train.result import TrainResult
from crownq.train.resume import TrainState, load_train_state, save_train_state
from crownq.train.signals import StopSignalHandler, TrainingPreempted, stop_requested
from crownq.train.step_parts import (
    agree_across_ranks,
    all_reduce_gradients,
    autocast_context,
    crownq_active,
    crownq_term,
    qat_bits_for,
    qat_phase,
    set_fake_quant,
    validate,
)


class Trainer:
    """Holds what every step needs so the loop below reads like the recipe."""

    def __init__(self, model: nn.Module, cfg: Any, dist_env: DistEnv, loader: Any,
                 log: Callable[[dict], None]):
        self.model, self.cfg, self.dist_env, self.loader = model, cfg, dist_env, loader
        self.tcfg, self.qcfg = cfg.train, cfg.quantizer
        self.log = log
        self.device = dist_env.device
        self.opts = Optimizers(model, self.tcfg, dist_env)
        on_cuda = self.device.type == "cuda"
        use_compile = self.tcfg.compile == "on" or (self.tcfg.compile == "auto" and on_cuda)
        if self.tcfg.compile not in ("auto", "on", "off"):
            raise ValueError(f"train.compile must be auto, on or off, got {self.tcfg.compile!r}")
        self.forward = torch.compile(model) if use_compile else model
        self.qat_bits = qat_bits_for(model, self.qcfg)
        self.phase = "off"
        self.priming = False

    def say(self, line: str) -> None:
        if self.dist_env.is_main:
            logger("train").info(line)

    def step(self, step: int, scale: float) -> torch.Tensor:
        """One optimizer step (all micro-steps); returns this rank's mean micro-step loss (detached)."""
        tcfg = self.tcfg
        self.opts.set_lr_scale(scale)
        self.opts.set_muon_momentum(muon_momentum_at(step, tcfg))
        phase = qat_phase(scale, self.qcfg, self.phase)
        if phase != self.phase:  # only on change: a new fake_quant callable recompiles a compiled model
            set_fake_quant(self.model, phase, self.qcfg, self.qat_bits)
            if not self.priming:
                self.say(f"step {step}: late QAT phase {self.phase} -> {phase} (lr_scale {scale:.4f})")
            self.phase = phase
        self.opts.zero_grad()
        total = torch.zeros((), device=self.device)
        for _ in range(tcfg.grad_accum_steps):
            x, y = self.loader.next_batch(tcfg.train_batch_tokens, tcfg.seq_len, tcfg.grad_accum_steps)
            with autocast_context(self.device, tcfg.autocast):
                loss = self.forward(x, y)
            total += loss.detach().float()
            (loss / tcfg.grad_accum_steps).backward()
        if crownq_active(scale, self.qcfg, qat_on=self.phase != "off"):
            # Once per step, not per micro-step: after the all-reduce mean every rank's copy counts once.
            crownq_term(self.model, self.qcfg).backward()
        all_reduce_gradients(self.opts.params, self.dist_env.world_size)
        if tcfg.grad_clip_norm > 0:
            torch.nn.utils.clip_grad_norm_(self.opts.params, tcfg.grad_clip_norm)
        self.opts.step()
        return total / tcfg.grad_accum_steps

    def sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def prime(self) -> None:
        """Run warmup_steps real steps (compiles every kernel), then put weights, optimizer state and
        loader position back exactly as they were: priming must not change what is trained."""
        n = self.tcfg.warmup_steps
        if n <= 0:
            return
        t0 = time.perf_counter()
        saved = copy.deepcopy({"model": self.model.state_dict(), "opts": self.opts.state_dict(),
                               "loader": self.loader.state_dict()})
        # The last priming steps run the late-QAT variants too (straight-through, then soft rounding),
        # so their recompiles happen here and not inside the timed warmdown.
        q = self.qcfg
        late = [0.5 * (q.qat_lr_scale_below + q.soft_round_lr_scale_below), 0.5 * q.soft_round_lr_scale_below]
        scales = [1.0] * max(n - 2, 0) + (late if q.qat else [1.0, 1.0])[-min(n, 2):]
        self.priming = True
        for i, scale in enumerate(scales):
            # Depth recurrence: the second half primes the looped graph too (arch.loop_enable_at).
            set_looping_for(self.model, 0.0 if i < n // 2 else 1.0)
            self.step(i, scale)
        self.priming = False
        self.sync()
        self.model.load_state_dict(saved["model"])
        self.opts.load_state_dict(saved["opts"])
        self.loader.load_state_dict(saved["loader"])
        set_fake_quant(self.model, "off", q, self.qat_bits)
        self.phase = "off"
        self.say(f"stage priming: {n} steps, {time.perf_counter() - t0:.1f}s (not counted as training)")


def _print_log(metrics: dict) -> None:
    logger("train").info(" ".join(f"{k}={v:.5g}" if isinstance(v, float) else f"{k}={v}"
                                  for k, v in metrics.items()))


def _debug(cfg: Any) -> dict:
    debug = cfg.get("debug") if hasattr(cfg, "get") else None
    return dict(debug or {})


def _checkpoint_owner(cfg: Any) -> dict[str, Any] | None:
    """Seed and training digest a checkpoint is stamped with (None for a config without a seed)."""
    from crownq.results import training_digest

    if not hasattr(cfg, "keys") or "seed" not in cfg:
        return None
    return {"seed": int(cfg.seed), "training_digest": training_digest(cfg)}


def _check_batch(tcfg: Any, world_size: int) -> int:
    per_micro = world_size * tcfg.grad_accum_steps * tcfg.seq_len
    if tcfg.grad_accum_steps < 1 or tcfg.train_batch_tokens % per_micro:
        raise ValueError(f"train.train_batch_tokens={tcfg.train_batch_tokens} must be a multiple of "
                         f"world_size * train.grad_accum_steps * train.seq_len = "
                         f"{world_size}*{tcfg.grad_accum_steps}*{tcfg.seq_len}")
    return tcfg.train_batch_tokens // per_micro  # sequences per micro-batch


def train_model(model: nn.Module, cfg: Any, dist_env: DistEnv, train_files: list[Path] | None,
                val_tokens: torch.Tensor | None, byte_tables: Any, ckpt_dir: str | os.PathLike | None = None,
                log: Callable[[dict], None] | None = None, *, loader: Any = None) -> TrainResult:
    """Train `model` in place (it ends holding the averaged weights) and return a TrainResult.

    `loader` replaces the DistributedTokenLoader built from `train_files` (tests). A checkpoint in
    `ckpt_dir` is resumed automatically; SIGTERM/SIGUSR1 (or debug.stop_after_step) save one and raise
    TrainingPreempted.
    """
    tcfg, debug = cfg.train, _debug(cfg)
    log = log or _print_log
    micro_seqs = _check_batch(tcfg, dist_env.world_size)
    if loader is None:
        from crownq.data.loader import DistributedTokenLoader

        loader = DistributedTokenLoader(train_files, dist_env.rank, dist_env.world_size, dist_env.device,
                                        vocab_size=cfg.data.vocab_size)
    # GPT.place also applies the record's CUDA parameter dtypes (bf16 embedding tables).
    (model.place(dist_env.device) if hasattr(model, "place") else model.to(dist_env.device)).train()
    trainer = Trainer(model, cfg, dist_env, loader, log)
    trainer.prime()
    averager = WeightAverager(model, cfg.averaging)
    state = TrainState()
    ckpt = checkpoint_path(ckpt_dir) if ckpt_dir is not None else None
    owner = _checkpoint_owner(cfg)
    if ckpt is not None and ckpt.exists():
        state = load_train_state(ckpt, model, trainer.opts, averager, loader, dist_env, owner)
        trainer.say(f"resumed from {ckpt} at step {state.step} ({state.elapsed:.1f}s of training done)")

    def val_now() -> tuple[float, float]:
        if val_tokens is None:
            return float("nan"), float("nan")
        return validate(model, val_tokens, byte_tables, tcfg.seq_len, micro_seqs, tcfg.val_max_tokens,
                        dist_env, tcfg.autocast)

    def checkpoint(reason: str) -> str | None:
        if ckpt is None:
            return None
        t0 = time.perf_counter()
        save_train_state(ckpt, state, model, trainer.opts, averager, loader, dist_env, owner)
        trainer.say(f"checkpoint ({reason}) at step {state.step}: {ckpt} in {time.perf_counter() - t0:.1f}s")
        return str(ckpt)

    nonfinite: list[tuple[int, float]] = []  # (step, loss) of the first non-finite loss on this rank

    def one_step(scale: float) -> None:
        t0 = time.perf_counter()
        loss = trainer.step(state.step, scale)
        state.step += 1
        averager.update(model, state.step, scale)
        trainer.sync()
        if not nonfinite and not bool(torch.isfinite(loss)):  # after the sync: no extra device wait
            nonfinite.append((state.step, float(loss)))
        state.elapsed += time.perf_counter() - t0
        val_due = tcfg.val_every > 0 and state.step % tcfg.val_every == 0
        log_due = state.step == 1 or state.step % max(tcfg.log_every, 1) == 0 or state.step == tcfg.iterations
        if log_due or val_due:
            entry = {"step": state.step, "train_loss": float(loss), "lr_scale": scale,
                     "train_seconds": state.elapsed, "qat_phase": trainer.phase}
            if val_due:
                entry["val_loss"], entry["val_bpb"] = val_now()
            state.history.append(entry)
            if dist_env.is_main:
                log(dict(entry))

    t_loop = time.perf_counter()
    with StopSignalHandler():
        while True:
            # A non-finite loss stops every rank at the same step (a rank leaving alone would hang the rest).
            state.elapsed, stop = agree_across_ranks(state.elapsed, stop_requested() is not None or
                                                     bool(nonfinite), dist_env)
            if stop and agree_across_ranks(0.0, bool(nonfinite), dist_env)[1]:
                step, value = nonfinite[0] if nonfinite else (state.step, float("nan"))
                raise TrainingDiverged(step, value)
            if stop:
                path = checkpoint(f"stop: {stop_requested() or 'another rank'}")
                raise TrainingPreempted(state.step, path, stop_requested() or "another rank was signalled")
            if schedule.should_stop(state.step, state.elapsed, tcfg):
                break
            if set_looping_for(model, schedule.training_frac(state.step, state.elapsed, tcfg)):
                trainer.say(f"step {state.step}: depth recurrence {'on' if model.looping_active else 'off'} "
                            f"(arch.loop_enable_at {cfg.arch.loop_enable_at})")
            one_step(schedule.lr_scale(state.step, state.elapsed, tcfg))
            if tcfg.checkpoint_every > 0 and state.step % tcfg.checkpoint_every == 0:
                checkpoint("periodic")
            if debug.get("signal_at_step") == state.step:
                os.kill(os.getpid(), signal.SIGUSR1)
            if debug.get("stop_after_step") == state.step:
                path = checkpoint("debug.stop_after_step")
                raise TrainingPreempted(state.step, path, "debug.stop_after_step")
    trainer.say(f"stage train: {state.step} steps, {state.elapsed:.1f}s training time "
                f"({time.perf_counter() - t_loop:.1f}s wall in this process incl. validation/checkpoints)")
    if tcfg.burst_steps > 0 and not state.burst_done:
        t0 = time.perf_counter()
        for _ in range(tcfg.burst_steps):
            one_step(tcfg.burst_lr_scale)
            if agree_across_ranks(0.0, bool(nonfinite), dist_env)[1]:
                step, value = nonfinite[0] if nonfinite else (state.step, float("nan"))
                raise TrainingDiverged(step, value)
        state.burst_done = True
        trainer.say(f"stage burst: {tcfg.burst_steps} steps at lr_scale {tcfg.burst_lr_scale}, "
                    f"{time.perf_counter() - t0:.1f}s (counted in training time: {state.elapsed:.1f}s)")
    if ckpt is not None:  # a requeue after training (e.g. during export) then skips straight to here
        checkpoint("final")
    t0 = time.perf_counter()
    averaged, used = averager.averaged_state_dict(model)
    model.load_state_dict(averaged)
    set_fake_quant(model, "off", cfg.quantizer, trainer.qat_bits)
    trainer.say(f"stage averaging: {used} (swa snapshots {averager.swa_count}), "
                f"{time.perf_counter() - t0:.1f}s")
    t0 = time.perf_counter()
    val_loss, val_bpb = val_now()
    trainer.say(f"stage prequant validation: val_loss {val_loss:.4f} val_bpb {val_bpb:.4f}, "
                f"{time.perf_counter() - t0:.1f}s")
    return TrainResult(steps=state.step, train_seconds=state.elapsed, state_dict=averaged,
                       prequant_val_loss=val_loss, prequant_val_bpb=val_bpb, history=state.history,
                       averaging=used)
