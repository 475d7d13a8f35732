"""The training loop: iteration-based, mixed precision, non-finite guard, periodic checkpoints and evaluation.

One `Trainer` per process. Rank 0 writes checkpoints, TensorBoard events, ``metrics.json`` (one JSON object per
line, like Detectron2's) and the console progress line; every rank computes the same number of steps.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import logging
import math
import time
from pathlib import Path

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from ..checkpoint.io import load_model_weights, save_checkpoint
from ..config import CfgNode
from ..evaluation.report import flatten
from ..modeling.build import build_model
from .checkpointer import Checkpointer, rng_state, set_rng_state
from .distributed import get_rank, get_world_size, is_main_process, synchronize
from .solver import build_lr_scheduler, build_optimizer, clip_gradients

logger = logging.getLogger("panopticdepth.train")


class NonFiniteLossError(RuntimeError):
    """Too many consecutive non-finite losses: the run stops, the last good checkpoint is kept."""


def _unwrap(model: nn.Module) -> nn.Module:
    return model.module if isinstance(model, DistributedDataParallel) else model


class Trainer:
    """Owns model, optimiser, schedule, scaler, data and the checkpointer for one process of a run."""

    def __init__(self, cfg: CfgNode, resume: bool = False) -> None:
        self.cfg = cfg
        self.rank, self.world_size = get_rank(), get_world_size()
        self.device = torch.device(cfg.MODEL.DEVICE if cfg.MODEL.DEVICE != "cuda" or torch.cuda.is_available()
                                   else "cpu")
        if self.device.type == "cuda" and self.world_size > 1:
            self.device = torch.device("cuda", torch.cuda.current_device())
        self.output_dir = Path(cfg.OUTPUT_DIR)
        model = build_model(cfg).to(self.device)
        if cfg.MODEL.RESNETS.NORM == "SyncBN" and self.world_size > 1 and self.device.type == "cuda":
            model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
        self.model_plain = model
        self.optimizer = build_optimizer(model, cfg)
        self.scheduler = build_lr_scheduler(self.optimizer, cfg)
        self.amp_dtype = None
        if cfg.SOLVER.AMP.ENABLED:
            self.amp_dtype = torch.bfloat16 if cfg.SOLVER.AMP.PRECISION == "bf16" else torch.float16
        use_scaler = self.amp_dtype == torch.float16 and self.device.type == "cuda"
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=use_scaler)
        self.checkpointer = Checkpointer(self.output_dir, cfg.SOLVER.MAX_TO_KEEP)
        self.start_iter = 0
        self.nonfinite_in_a_row = 0
        self.nonfinite_total = 0
        self._resume_or_load(resume)
        self.model: nn.Module = model
        if self.world_size > 1:
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.model = DistributedDataParallel(model, device_ids=ids, broadcast_buffers=False,
                                                 find_unused_parameters=False)
        self.tb = None
        self.metrics_file = None

    # ------------------------------------------------------------------------------------------ set-up
    def _resume_or_load(self, resume: bool) -> None:
        latest = self.checkpointer.latest() if resume else None
        if latest is not None:
            state = Checkpointer.load(latest, map_location=self.device)
            self.model_plain.load_state_dict(state["model"])
            self.optimizer.load_state_dict(state["optimizer"])
            self.scheduler.load_state_dict(state["scheduler"])
            self.scaler.load_state_dict(state["scaler"])
            set_rng_state(state["rng"][min(self.rank, len(state["rng"]) - 1)])
            self.start_iter = int(state["iteration"])
            logger.info("resumed from %s at iteration %d", latest, self.start_iter)
            return
        if self.cfg.MODEL.WEIGHTS:
            # Stage chaining (e.g. the DPS stage starts from a panoptic-only model): parts the file lacks,
            # like the depth heads, keep their initialisation; everything the file has must fit.
            report = load_model_weights(self.model_plain, self.cfg.MODEL.WEIGHTS, strict=False)
            fresh = sorted({key.split(".")[0] for key in report.missing})
            logger.info("initialised from %s: %d tensors loaded; freshly initialised (not in the file): %s; "
                        "ignored (not in this model): %d tensors", self.cfg.MODEL.WEIGHTS, report.loaded,
                        ", ".join(fresh) or "none", len(report.unexpected))

    def _state(self, iteration: int) -> dict:
        rng = [rng_state()]
        if self.world_size > 1:
            gathered: list = [None] * self.world_size
            dist.all_gather_object(gathered, rng[0])
            rng = gathered
        return {
            "model": self.model_plain.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "rng": rng,
            "iteration": iteration,
            "config": self.cfg.dump(),
        }

    def save_checkpoint(self, name: str, iteration: int) -> None:
        state = self._state(iteration)
        if is_main_process():
            path = self.checkpointer.save(name, state)
            logger.info("saved %s", path)
        synchronize()

    # ------------------------------------------------------------------------------------------ logging
    def _open_logs(self) -> None:
        if not is_main_process():
            return
        self.output_dir.mkdir(parents=True, exist_ok=True)
        (self.output_dir / "config.yaml").write_text(self.cfg.dump())
        self.metrics_file = open(self.output_dir / "metrics.json", "a")  # noqa: SIM115 - closed in train()
        try:
            from torch.utils.tensorboard import SummaryWriter

            self.tb = SummaryWriter(str(self.output_dir / "tensorboard"), purge_step=self.start_iter)
        except ImportError:
            logger.warning("tensorboard is not installed: no TensorBoard logs (pip install tensorboard)")

    def _log(self, iteration: int, record: dict) -> None:
        if not is_main_process():
            return
        if self.metrics_file:
            self.metrics_file.write(json.dumps({"iteration": iteration, **record}) + "\n")
            self.metrics_file.flush()
        if self.tb:
            for key, value in record.items():
                if isinstance(value, (int, float)) and math.isfinite(value):
                    self.tb.add_scalar(key, value, iteration)

    # ------------------------------------------------------------------------------------------ steps
    def _autocast(self):
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.amp_dtype)

    def run_step(self, images: list[torch.Tensor], targets: list) -> dict[str, float] | None:
        """One optimisation step; returns the loss values, or None when the step was skipped as non-finite."""
        self.model.train()
        with self._autocast():
            losses = self.model(images, targets)
        total = sum(losses.values())
        finite = torch.isfinite(total.detach()).float()
        if self.world_size > 1:  # every rank must skip together or DDP's collectives deadlock
            dist.all_reduce(finite, op=dist.ReduceOp.MIN)
        self.optimizer.zero_grad(set_to_none=True)
        if finite.item() < 1:
            self.nonfinite_in_a_row += 1
            self.nonfinite_total += 1
            bad = {k: float(v.detach()) for k, v in losses.items()}
            logger.warning("non-finite loss, step skipped (%d in a row): %s", self.nonfinite_in_a_row, bad)
            if self.nonfinite_in_a_row > self.cfg.SOLVER.MAX_NONFINITE:
                raise NonFiniteLossError(
                    f"{self.nonfinite_in_a_row} non-finite losses in a row (SOLVER.MAX_NONFINITE="
                    f"{self.cfg.SOLVER.MAX_NONFINITE}); stopping. The last good checkpoint in {self.output_dir} "
                    "is kept; lower SOLVER.BASE_LR or check the data."
                )
            # Keep DDP's reducer consistent: run a zero backward so the next iteration starts clean.
            (total * 0).nan_to_num(0.0).backward()
            self.optimizer.zero_grad(set_to_none=True)
            return None
        self.nonfinite_in_a_row = 0
        self.scaler.scale(total).backward()
        self.scaler.unscale_(self.optimizer)
        clip_gradients(self.model_plain, self.cfg)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        return {k: float(v.detach()) for k, v in losses.items()}

    # ------------------------------------------------------------------------------------------ the loop
    def train(self) -> dict:
        from ..data.build import build_train_loader

        cfg = self.cfg
        max_iter = cfg.SOLVER.MAX_ITER
        self._open_logs()
        loader = build_train_loader(cfg, rank=self.rank, world_size=self.world_size, start_iter=self.start_iter)
        data_iter = iter(loader)
        last_metrics: dict = {}
        window_start, window_images = time.perf_counter(), 0
        images_per_step = cfg.SOLVER.IMS_PER_BATCH
        iteration = self.start_iter
        try:
            while iteration < max_iter:
                batch = next(data_iter)
                images, targets = batch[0], batch[1]
                t_step = time.perf_counter()
                values = self.run_step(images, targets)
                self.scheduler.step()
                iteration += 1
                window_images += images_per_step
                if values is not None and (iteration % cfg.TEST.LOG_PERIOD == 0 or iteration == max_iter):
                    elapsed = time.perf_counter() - window_start
                    rate = window_images / max(elapsed, 1e-9)
                    record = {
                        "total_loss": sum(values.values()), **values,
                        "lr": self.optimizer.param_groups[0]["lr"], "images_per_s": rate,
                        "step_time": time.perf_counter() - t_step, "nonfinite_total": self.nonfinite_total,
                    }
                    if self.device.type == "cuda":
                        record["max_mem_mb"] = torch.cuda.max_memory_allocated(self.device) / 2**20
                    self._log(iteration, record)
                    eta = datetime.timedelta(seconds=int((max_iter - iteration) * images_per_step / max(rate, 1e-9)))
                    if is_main_process():
                        parts = "  ".join(f"{k.replace('loss_', '')} {v:.3f}" for k, v in values.items())
                        logger.info("iter %d/%d  loss %.3f  %s  lr %.2e  %.1f img/s  eta %s", iteration,
                                    max_iter, record["total_loss"], parts, record["lr"], rate, eta)
                    window_start, window_images = time.perf_counter(), 0
                if cfg.SOLVER.CHECKPOINT_PERIOD > 0 and iteration % cfg.SOLVER.CHECKPOINT_PERIOD == 0 \
                        and iteration < max_iter:
                    self.save_checkpoint(f"model_{iteration:07d}", iteration)
                if cfg.TEST.EVAL_PERIOD > 0 and iteration % cfg.TEST.EVAL_PERIOD == 0 and iteration < max_iter:
                    last_metrics = self.evaluate(iteration)
            self.save_checkpoint("model_final", iteration)
            if is_main_process():
                save_checkpoint(self.model_plain, self.output_dir / "model_final.safetensors", self.cfg)
            if cfg.TEST.EVAL_PERIOD >= 0 and cfg.DATASETS.TEST:
                last_metrics = self.evaluate(iteration)
        finally:
            if self.tb:
                self.tb.close()
            if self.metrics_file:
                self.metrics_file.close()
        return last_metrics

    def evaluate(self, iteration: int) -> dict:
        """Score the validation split(s) on rank 0; other ranks wait."""
        from .evaluation import evaluate_model

        metrics: dict = {}
        if is_main_process():
            for name in self.cfg.DATASETS.TEST:
                result = evaluate_model(self.model_plain, self.cfg, name, tb_writer=self.tb, iteration=iteration)
                metrics[name] = result
                scalars = flatten(result)
                self._log(iteration, {f"{name}/{k}": v for k, v in scalars.items()})
                shown = ("pq/all", "pq/things", "pq/stuff", "dpq/all", "depth/abs_rel", "depth/rmse")
                logger.info("evaluation on %s (%d frames) at iteration %d: %s", name, result.get("num_frames", 0),
                            iteration, "  ".join(f"{k} {scalars[k]:.4g}" for k in shown if k in scalars))
        synchronize()
        return metrics
