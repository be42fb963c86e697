"""One training engine for every method: epochs, optimiser and schedule, checkpoints, resume, run cache, DDP.

    run = fit(ModelSpec("resnet50", num_classes=7), build_method("ldam_drw"), train_set, val_set,
              TrainConfig(epochs=200, lr=1e-3, schedule="step", step_size=50, warmup_epochs=1))
    head = retrain_head(run, train_set, val_set, kind="crw")      # decoupled second stage
    probs = kitlib.infer.predict(run.model, test_set)

A run is identified by a hash of its full config (model, method, training settings, data fingerprint, the
run it starts from). Its folder holds `config.json`, `last.pt` after every epoch (an interrupted run resumes
there) and `final.pt` when finished (later calls return it without retraining).
Launched under `torchrun`, `fit` trains with DistributedDataParallel (NCCL on CUDA, gloo on CPU); the global
batch size stays `batch_size`.
"""
from __future__ import annotations

import contextlib
import copy
import dataclasses
import hashlib
import json
import math
import os
import pickle
import random
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.distributed as dist
import torch.nn as nn
from torch.utils.data import DataLoader, Sampler

from kitlib import metrics as M
from kitlib.infer import autocast, predict, resolve_device
from kitlib.methods import Method, build_method
from kitlib.models import KitModel, create_model
from kitlib.progress import bar as progress_bar
from kitlib.samplers import ClassAwareBatchSampler, build_sampler, shard

REPO = Path(__file__).resolve().parents[1]


@dataclass
class ModelSpec:
    """What `kitlib.models.create_model` builds; part of the run's identity."""

    name: str
    num_classes: int
    pretrained: bool = False
    small_input: bool = False
    head: str = "linear"
    width: int = 32  # tiny_cnn only
    small_stem: str = "keep"  # with small_input: "keep" the first conv's (pretrained) filters at stride 1, or "new"

    def build(self) -> KitModel:
        return create_model(self.name, self.num_classes, pretrained=self.pretrained,
                            small_input=self.small_input, head=self.head, width=self.width,
                            small_stem=self.small_stem)


OPTIMIZERS = ("sgd", "adamw", "adam")
SCHEDULES = ("step", "cosine", "cyclic", "plateau", "constant")
EXPLODE_FACTOR = 100.0
"""A batch loss above EXPLODE_FACTOR * max(first batch loss of the run, 1) counts as divergence."""


class TrainingDiverged(FloatingPointError):
    """The training loss became non-finite or exploded. The run is not cached; lower the lr."""


@dataclass
class TrainConfig:
    """Optimisation settings. Schedules are applied per iteration after `warmup_epochs` of linear warm-up.

    schedule: "step" (x gamma every step_size epochs), "cosine" (to min_lr), "cyclic" (cosine restarts every
    cycle_epochs, annealed towards min_lr), "plateau" (x gamma after `patience` epochs without a better
    validation score), "constant".
    select_metric: best-on-validation selection by this kitlib.metrics key (None: keep the last epoch).
    select: which epoch's weights the run keeps, stated explicitly: "best" (the best validation score by
        select_metric; needs a validation set and a select_metric) or "last" (the last epoch; validation
        is still scored and logged when select_metric is set). None (default) = the implicit rule above
        (best when there is a validation set and a select_metric, else last); left out of the run's
        identity, so runs cached before this field existed keep their hash.
    """

    epochs: int = 10
    batch_size: int = 32
    lr: float = 1e-3
    optimizer: str = "sgd"  # sgd | adamw | adam
    momentum: float = 0.9
    weight_decay: float = 5e-4
    nesterov: bool = False
    schedule: str = "step"
    step_size: int = 50
    gamma: float = 0.1
    min_lr: float = 0.0
    cycle_epochs: int = 10
    patience: int = 5
    warmup_epochs: float = 0.0
    select_metric: str | None = "mcr"
    select: str | None = None  # "best" | "last" | None (implicit: best with a val set and a select_metric)
    eval_every: int = 1
    seed: int = 0
    freeze_backbone: bool = False  # decoupled second stage: only the head trains
    unfreeze_last_block: bool = False  # with freeze_backbone: the backbone's last block trains too (paper 003 Decouple)
    drop_last: bool = False
    # how to run, not what is computed: excluded from the run's identity
    device: str = "auto"
    amp: bool = True  # bfloat16 autocast on CUDA only
    channels_last: bool = True  # CUDA only
    num_workers: int = 0
    eval_batch_size: int = 256

    RUNTIME = ("device", "amp", "channels_last", "num_workers", "eval_batch_size")

    def __post_init__(self):
        """Every field checked for type and range; a bad one is a ValueError naming it."""
        def bad(name, want):
            raise ValueError(f"TrainConfig.{name} must be {want}, got {getattr(self, name)!r}")

        def is_int(v):
            return isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_))

        def is_real(v):
            return (is_int(v) or isinstance(v, (float, np.floating))) and math.isfinite(v)

        for name, lo in (("epochs", 1), ("batch_size", 1), ("step_size", 1), ("cycle_epochs", 1), ("patience", 0),
                         ("eval_every", 1), ("seed", 0), ("num_workers", 0), ("eval_batch_size", 1)):
            if not is_int(getattr(self, name)) or getattr(self, name) < lo:
                bad(name, f"an integer >= {lo}")
        for name in ("nesterov", "freeze_backbone", "unfreeze_last_block", "drop_last", "amp", "channels_last"):
            if not isinstance(getattr(self, name), (bool, np.bool_)):
                bad(name, "True or False")
        if self.unfreeze_last_block and not self.freeze_backbone:
            bad("unfreeze_last_block", "False unless freeze_backbone=True (it says which part of a frozen backbone trains)")
        if not is_real(self.lr) or self.lr <= 0:
            bad("lr", "a finite number > 0")
        if not is_real(self.momentum) or not 0 <= self.momentum < 1:
            bad("momentum", "a number in [0, 1)")
        if not is_real(self.weight_decay) or self.weight_decay < 0:
            bad("weight_decay", "a finite number >= 0")
        if not is_real(self.gamma) or not 0 < self.gamma <= 1:
            bad("gamma", "a number in (0, 1]")
        if not is_real(self.min_lr) or not 0 <= self.min_lr <= self.lr:
            bad("min_lr", f"a number in [0, lr={self.lr!r}]")
        if not is_real(self.warmup_epochs) or not 0 <= self.warmup_epochs <= self.epochs:
            bad("warmup_epochs", f"a number in [0, epochs={self.epochs}]")
        if self.optimizer not in OPTIMIZERS:
            bad("optimizer", f"one of {OPTIMIZERS}")
        if self.schedule not in SCHEDULES:
            bad("schedule", f"one of {SCHEDULES}")
        if self.nesterov and (self.optimizer != "sgd" or self.momentum == 0):
            bad("nesterov", "False unless optimizer='sgd' with momentum > 0")
        if self.select_metric is not None and (not isinstance(self.select_metric, str) or not self.select_metric):
            bad("select_metric", "None or a kitlib.metrics key such as 'mcr'")
        if self.select not in (None, "best", "last"):
            bad("select", "None, 'best' (best validation epoch by select_metric) or 'last' (last epoch)")
        if self.select == "best" and not self.select_metric:
            bad("select", "'last' or None when select_metric is None ('best' needs a select_metric)")
        if not isinstance(self.device, (str, torch.device)):
            bad("device", "a string such as 'auto', 'cpu', 'cuda' or 'cuda:1'")
        if self.device != "auto":
            try:
                torch.device(self.device)
            except RuntimeError:
                bad("device", "'auto', 'cpu', 'cuda' or 'cuda:N'")

    def identity(self) -> dict:
        out = {k: v for k, v in dataclasses.asdict(self).items() if k not in self.RUNTIME}
        if out["select"] is None:  # the implicit rule: same identity as before `select` existed
            del out["select"]
        if not out["unfreeze_last_block"]:  # same identity as before the field existed
            del out["unfreeze_last_block"]
        return out


@dataclass
class TrainedRun:
    model: KitModel
    spec: ModelSpec
    method: dict
    config: dict
    key: str
    run_dir: Path
    history: pd.DataFrame
    best_epoch: int
    best_score: float | None
    class_counts: np.ndarray
    extras: list = field(default_factory=list)

    def __repr__(self):
        return (f"TrainedRun({self.spec.name}, {self.method['name']}, key={self.key}, best_epoch={self.best_epoch}, "
                f"best_score={self.best_score})")


# --------------------------------------------------------------------------- identity and cache


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def runs_root(root=None) -> Path:
    """Run cache folder: `root`, else $KITLIB_RUNS, else <repo>/runs."""
    return Path(root or os.environ.get("KITLIB_RUNS") or REPO / "runs")


def _jsonable(obj):
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (np.floating,)):
        return float(obj)
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    return obj


def config_key(config: dict) -> str:
    """Stable 16-hex-digit hash of a JSON-able config."""
    blob = json.dumps(_jsonable(config), sort_keys=True, default=str).encode()
    return hashlib.sha1(blob).hexdigest()[:16]


def data_fingerprint(dataset) -> str:
    """Hash of exactly what a dataset feeds the model: image bytes, labels, selected rows, transform."""
    if hasattr(dataset, "fingerprint"):
        return dataset.fingerprint()
    arrays = dataset.arrays
    h = hashlib.sha1()
    fp = arrays.meta.get("_fingerprint")
    if fp is None:  # hash the whole array once per ImageArrays and remember it
        hh = hashlib.sha1(np.ascontiguousarray(arrays.images).data)
        hh.update(arrays.labels.tobytes())
        if arrays.masks is not None:
            hh.update(np.ascontiguousarray(arrays.masks).data)
        fp = arrays.meta["_fingerprint"] = hh.hexdigest()
    h.update(fp.encode())
    idx = getattr(dataset, "indices", None)
    h.update(np.asarray(idx if idx is not None else np.arange(len(arrays)), dtype=np.int64).tobytes())
    h.update(repr(getattr(dataset, "transform", None)).encode())
    return h.hexdigest()[:16]


def _atomic_torch_save(obj, path: Path) -> None:
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    try:
        torch.save(obj, tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _read_checkpoint(path: Path, device, then: str) -> dict | None:
    """A checkpoint's content, or None when it cannot be read (truncated, not a torch file): then it is moved
    aside to `<name>.corrupt` with a warning naming it and saying what happens next (`then`)."""
    try:
        return torch.load(path, map_location=device, weights_only=False)
    except PermissionError:
        raise
    except (RuntimeError, EOFError, pickle.UnpicklingError, ValueError, OSError) as err:  # truncated: OSError 22
        aside = path.with_name(path.name + ".corrupt")
        try:
            os.replace(path, aside)
        except FileNotFoundError:  # another rank moved it already
            pass
        why = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        warnings.warn(f"unreadable checkpoint {path} ({why}); moved it to {aside.name}, {then}", RuntimeWarning,
                      stacklevel=3)
        return None


def _discard(run_dir: Path) -> None:
    """Remove what a failed run wrote (its checkpoint and config), so the cache holds no trace of it."""
    for name in ("last.pt", "config.json"):
        (run_dir / name).unlink(missing_ok=True)
    with contextlib.suppress(OSError):
        run_dir.rmdir()  # only when empty: anything else there is not ours to delete


def _atomic_json(obj, path: Path) -> None:
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    tmp.write_text(json.dumps(_jsonable(obj), indent=2, sort_keys=True, default=str))
    os.replace(tmp, path)


# --------------------------------------------------------------------------- distributed


def _dist_setup() -> tuple[int, int, int]:
    """(rank, world_size, local_rank); initialises the process group when launched by torchrun."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    if dist.is_initialized():
        return dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0"))
    return 0, 1, 0


class _ShardedSampler(Sampler):
    """This rank's share of an epoch-aware sampler's indices (every rank gets the same count)."""

    def __init__(self, sampler, rank: int, world: int):
        self.sampler, self.rank, self.world = sampler, rank, world

    def set_epoch(self, epoch):
        self.sampler.set_epoch(epoch)

    def __iter__(self):
        return iter(shard(list(self.sampler), self.rank, self.world))

    def __len__(self):
        return math.ceil(len(self.sampler) / self.world)


# --------------------------------------------------------------------------- optimisation


def make_optimizer(params, cfg: TrainConfig) -> torch.optim.Optimizer:
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay,
                               nesterov=cfg.nesterov)
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    raise ValueError(f"unknown optimizer {cfg.optimizer!r}; choose sgd, adamw or adam")


class LRSchedule:
    """Learning-rate factor as a function of training progress t (in epochs, fractional)."""

    def __init__(self, cfg: TrainConfig):
        if cfg.schedule not in SCHEDULES:
            raise ValueError(f"unknown schedule {cfg.schedule!r}; choose one of {SCHEDULES}")
        self.cfg = cfg
        self.plateau_factor = 1.0
        self.bad_epochs = 0
        self.best = -math.inf

    def factor(self, t: float) -> float:
        c = self.cfg
        warm = min(1.0, t / c.warmup_epochs) if c.warmup_epochs > 0 else 1.0
        floor = c.min_lr / c.lr
        if c.schedule == "step":
            f = c.gamma ** int(t // c.step_size)
        elif c.schedule == "cosine":
            span = max(c.epochs - c.warmup_epochs, 1e-8)
            u = min(max(t - c.warmup_epochs, 0.0) / span, 1.0)
            f = floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * u))
        elif c.schedule == "cyclic":
            u = (t % c.cycle_epochs) / c.cycle_epochs
            f = floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * u))
        elif c.schedule == "plateau":
            f = self.plateau_factor
        else:
            f = 1.0
        return warm * f

    def observe(self, score: float | None) -> None:
        """End-of-epoch validation score (plateau schedule only)."""
        if self.cfg.schedule != "plateau" or score is None:
            return
        if score > self.best:
            self.best, self.bad_epochs = score, 0
        else:
            self.bad_epochs += 1
            if self.bad_epochs > self.cfg.patience:
                self.plateau_factor *= self.cfg.gamma
                self.bad_epochs = 0

    def state_dict(self):
        return {"plateau_factor": self.plateau_factor, "bad_epochs": self.bad_epochs, "best": self.best}

    def load_state_dict(self, s):
        self.plateau_factor, self.bad_epochs, self.best = s["plateau_factor"], s["bad_epochs"], s["best"]


# --------------------------------------------------------------------------- the engine


def _to_device(batch, device, channels_last):
    if isinstance(batch, dict):
        return {k: _to_device(v, device, channels_last) for k, v in batch.items()}
    if isinstance(batch, torch.Tensor):
        batch = batch.to(device, non_blocking=True)
        if channels_last and batch.dim() == 4 and batch.shape[1] == 3:
            batch = batch.contiguous(memory_format=torch.channels_last)
    return batch


CLASS_AWARE = "class_aware"
"""Method.sampler name of the class-aware batch sampler (kitlib.samplers.ClassAwareBatchSampler): every batch
holds batch_size // C items of each class (the contrastive code's "balance" batches); sampler_kwargs may
give classes_per_batch."""


def _with_views(dataset, views: int):
    """The train set yielding `views` augmented views per sample (SupCon needs 2)."""
    if views == getattr(dataset, "views", 1):
        return dataset
    if not hasattr(dataset, "views"):
        raise ValueError(f"the method needs {views} views per sample but {type(dataset).__name__} has no `views`")
    ds = copy.copy(dataset)
    ds.views = views
    return ds


def _trainable(model: KitModel, cfg: TrainConfig) -> list:
    if cfg.freeze_backbone:
        for p in model.backbone.parameters():
            p.requires_grad_(False)
        block = [p for m in model.last_block() for p in m.parameters()] if cfg.unfreeze_last_block else []
        for p in block:
            p.requires_grad_(True)
        return block + list(model.head.parameters())
    return [p for p in model.parameters() if p.requires_grad]


def fit(model: ModelSpec | dict, method: Method | str, train_set, val_set=None, cfg: TrainConfig | dict | None = None,
        *, init: TrainedRun | None = None, run_root=None, cache: bool = True, progress: bool = True,
        callbacks=()) -> TrainedRun:
    """Train (or fetch from the run cache) a model with a method.

    model: a ModelSpec (or its dict); its head is replaced by the method's when the method needs one (LDAM).
    method: a Method or a registry name.
    train_set / val_set: kitlib.data.TorchImageSet (anything with .labels, .class_counts() and dict items).
    init: start from this run's weights; with cfg.freeze_backbone the head is re-initialised and only it trains
        (decoupled second stage), with cfg.unfreeze_last_block the backbone's last block too.
    callbacks: callables cb(epoch, logs) after each epoch (raising stops training; the run resumes later).
    """
    spec = model if isinstance(model, ModelSpec) else ModelSpec(**model)
    method = build_method(method) if isinstance(method, str) else method
    # replace() re-runs the checks, so a config edited after it was made is validated too
    cfg = dataclasses.replace(cfg) if isinstance(cfg, TrainConfig) else TrainConfig(**(cfg or {}))
    if method.head and method.head != spec.head:
        spec = dataclasses.replace(spec, head=method.head)
    counts = np.asarray(train_set.class_counts())
    if (counts == 0).any():
        names = getattr(train_set, "class_names", None) or list(range(len(counts)))
        missing = [names[i] for i in np.flatnonzero(counts == 0)]
        raise ValueError(f"the training split has no sample of class(es) {missing}")
    if val_set is not None and cfg.select_metric:
        known = [*M.BASE_METRICS, *(f"{k}_{c}" for k in ("recall", "f1") for c in range(len(counts)))]
        if cfg.select_metric not in known:
            raise ValueError(f"TrainConfig.select_metric {cfg.select_metric!r} is not a kitlib.metrics key; "
                             f"known: {known}")
    if cfg.select == "best" and val_set is None:
        raise ValueError("TrainConfig.select='best' needs a validation set (val_set is None); "
                         "give one or set select='last'")
    config = {
        "model": dataclasses.asdict(spec),
        "method": method.config(),
        "train": cfg.identity(),
        "data": {"train": data_fingerprint(train_set), "val": data_fingerprint(val_set) if val_set is not None else None},
        "init": init.key if init is not None else None,
    }
    key = config_key(config)
    run_dir = runs_root(run_root) / key
    rank, world, local_rank = _dist_setup()
    device = resolve_device(cfg.device)
    if device.type == "cuda" and world > 1:
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    if cfg.batch_size < world:
        raise ValueError(f"TrainConfig.batch_size={cfg.batch_size} is smaller than the {world} processes; "
                         f"give at least one sample per process")
    final, last = run_dir / "final.pt", run_dir / "last.pt"
    if cache and final.exists():
        ck = _read_checkpoint(final, "cpu", "resuming from last.pt" if last.exists() else "retraining")
        if ck is not None:
            return _load_run(ck, spec, config, key, run_dir, counts, method, device)

    seed_everything(cfg.seed)
    net = spec.build()
    if init is not None:
        net.backbone.load_state_dict(init.model.backbone.state_dict())
        if not cfg.freeze_backbone and init.spec.head == spec.head:
            net.head.load_state_dict(init.model.head.state_dict())
    net.to(device)
    channels_last = cfg.channels_last and device.type == "cuda"
    if channels_last:
        net.to(memory_format=torch.channels_last)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    extras = [m.to(device) for m in method.setup(net, counts, cfg.epochs)]
    # an extra module with an `optim_group` dict (e.g. centre-loss centres: own lr, no momentum, fixed_lr) gets
    # its own parameter group; the others share the network's settings
    own = [m for m in extras if getattr(m, "optim_group", None)]
    params = _trainable(net, cfg) + [p for m in extras if not any(m is o for o in own)
                                                     for p in m.parameters()]
    opt = make_optimizer([{"params": params}] + [{"params": list(m.parameters()), **m.optim_group} for m in own]
                         if own else params, cfg)
    sched = LRSchedule(cfg)

    train_set = _with_views(train_set, method.views)
    labels = np.asarray(train_set.labels)

    def loader_for(sampler_name, sampler_kwargs, seed):
        if sampler_name == CLASS_AWARE:  # whole batches with batch_size // C items of each class
            # each process draws its own batches (seed by rank); N // batch_size global steps per epoch
            s = ClassAwareBatchSampler(labels, batch_size=cfg.batch_size // world, seed=seed + 104729 * rank,
                                       num_batches=max(1, len(labels) // cfg.batch_size), **sampler_kwargs)
            dl = DataLoader(train_set, batch_sampler=s, num_workers=cfg.num_workers,
                            pin_memory=device.type == "cuda", persistent_workers=cfg.num_workers > 0)
            return s, dl
        s = build_sampler(sampler_name, labels, seed=seed, **sampler_kwargs)
        if world > 1:
            s = _ShardedSampler(s, rank, world)
        dl = DataLoader(train_set, batch_size=cfg.batch_size // world, sampler=s,
                        num_workers=cfg.num_workers, pin_memory=device.type == "cuda",
                        drop_last=cfg.drop_last, persistent_workers=cfg.num_workers > 0)
        return s, dl

    sampler, loader = loader_for(method.sampler, method.sampler_kwargs(cfg.epochs), cfg.seed)
    extra = loader_for(method.extra_sampler, {}, cfg.seed + 7919) if method.extra_sampler else None
    for s, dl in ((sampler, loader), *([extra] if extra else [])):
        if len(dl) == 0:
            raise ValueError(f"no optimiser step would be taken: {len(s)} training samples per epoch (per process) "
                             f"and batch_size={dl.batch_size} with drop_last={cfg.drop_last}; lower "
                             f"TrainConfig.batch_size or set drop_last=False")
    ddp_net = net
    if world > 1:
        ddp_net = nn.parallel.DistributedDataParallel(
            net, device_ids=[device.index] if device.type == "cuda" else None,
            find_unused_parameters=cfg.freeze_backbone or getattr(method, "unused_parameters", False))

    start, history, best = 0, [], {"epoch": -1, "score": None, "state": None, "extras": None}
    loss0 = None  # first batch loss of the run: the yardstick of an exploding loss
    ck = _read_checkpoint(last, device, "retraining from scratch") if cache and last.exists() else None
    if ck is not None:
        net.load_state_dict(ck["model"])
        for m, s in zip(extras, ck["extras"]):
            m.load_state_dict(s)
        opt.load_state_dict(ck["optimizer"])
        sched.load_state_dict(ck["schedule"])
        start, history, best, loss0 = ck["epoch"] + 1, ck["history"], ck["best"], ck.get("loss0")
    if rank == 0:
        run_dir.mkdir(parents=True, exist_ok=True)
        _atomic_json(config, run_dir / "config.json")

    iters = len(loader)
    bar = progress_bar(range(start, cfg.epochs), desc=f"{spec.name}/{method.name}", progress=progress and rank == 0,
                       initial=start, total=cfg.epochs, leave=False)
    for epoch in bar:
        seed_everything(cfg.seed * 100003 + epoch)  # every epoch reproducible on its own, so resume is exact
        sampler.set_epoch(epoch)
        if extra:
            extra[0].set_epoch(epoch)
            extra_iter = iter(extra[1])
        method.on_epoch_start(epoch)
        ddp_net.train()
        for m in extras:
            m.train()
        if cfg.freeze_backbone:
            net.backbone.eval()  # frozen features: batch-norm statistics stay as trained
            for m in net.last_block() if cfg.unfreeze_last_block else ():
                m.train()
        t0, tot, n = time.time(), 0.0, 0
        for i, batch in enumerate(loader):
            for g in opt.param_groups:
                if not g.get("fixed_lr"):  # a group with fixed_lr keeps its own constant lr
                    g["lr"] = cfg.lr * sched.factor(epoch + i / iters)
            batch = _to_device(batch, device, channels_last)
            if extra:
                try:
                    eb = next(extra_iter)
                except StopIteration:
                    extra_iter = iter(extra[1])
                    eb = next(extra_iter)
                batch["extra"] = _to_device(eb, device, channels_last)
            with autocast(device, cfg.amp):
                loss, _ = method.loss(ddp_net, batch, epoch)
            value = float(loss.detach())
            loss0 = value if loss0 is None and math.isfinite(value) else loss0
            if not math.isfinite(value) or value > EXPLODE_FACTOR * max(loss0, 1.0):
                if rank == 0:
                    _discard(run_dir)
                what = f"is {value}" if not math.isfinite(value) else \
                    f"exploded to {value:.4g} (first batch: {loss0:.4g})"
                raise TrainingDiverged(
                    f"{spec.name}/{method.name}: the training loss {what} at epoch {epoch}, batch {i} "
                    f"(lr {opt.param_groups[0]['lr']:.3g}): training diverged; lower the lr (TrainConfig.lr={cfg.lr:g}, "
                    f"e.g. {cfg.lr / 10:g}) or add warm-up (warmup_epochs). Nothing was cached for this run.")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if world > 1:
                for m in extras:
                    for p in m.parameters():
                        if p.grad is not None:
                            dist.all_reduce(p.grad)
                            p.grad /= world
            opt.step()
            tot += value * len(batch["label"])
            n += len(batch["label"])
        logs = {"epoch": epoch, "loss": tot / max(n, 1), "lr": opt.param_groups[0]["lr"], "time_s": time.time() - t0}
        logs.update(method.epoch_logs())  # e.g. the lambdas a mixing method drew this epoch
        score = None
        evaluate_now = val_set is not None and ((epoch + 1) % cfg.eval_every == 0 or epoch == cfg.epochs - 1)
        if evaluate_now and rank == 0:
            probs = predict(net, val_set, batch_size=cfg.eval_batch_size, device=device, amp=cfg.amp)
            mets = M.evaluate(np.asarray(val_set.labels), probs, train_counts=counts, num_classes=len(counts))
            logs.update({f"val_{k}": v for k, v in mets.items()})
            if cfg.select_metric:
                score = float(mets[cfg.select_metric])  # a known key: checked before training
        if world > 1 and cfg.schedule == "plateau":
            t = torch.tensor([score if score is not None else float("nan")], dtype=torch.float64)
            dist.broadcast(t, 0)
            score = None if math.isnan(t.item()) else t.item()
        sched.observe(score)
        if score is not None and cfg.select != "last" and (best["score"] is None or score > best["score"]):
            best = {"epoch": epoch, "score": score, "state": _cpu_state(net), "extras": [_cpu_state(m) for m in extras]}
        history.append(logs)
        if rank == 0:
            _atomic_torch_save({"model": net.state_dict(), "extras": [m.state_dict() for m in extras],
                                "optimizer": opt.state_dict(), "schedule": sched.state_dict(), "epoch": epoch,
                                "history": history, "best": best, "loss0": loss0}, last)
        bar.set_postfix(loss=f"{logs['loss']:.3f}", **({cfg.select_metric: f"{score:.3f}"} if score is not None else {}))
        for cb in callbacks:
            cb(epoch, logs)

    if best["state"] is None:  # select="last", or no validation-based selection: keep the last epoch
        last_score = history[-1].get(f"val_{cfg.select_metric}") if history and cfg.select_metric else None
        best = {"epoch": cfg.epochs - 1, "score": None if last_score is None else float(last_score),
                "state": _cpu_state(net), "extras": [_cpu_state(m) for m in extras]}
    if rank == 0:
        _atomic_torch_save({"model": best["state"], "extras": best["extras"], "history": history,
                            "best_epoch": best["epoch"], "best_score": best["score"], "config": config}, final)
        last.unlink(missing_ok=True)
    if world > 1:  # every rank returns rank 0's selection
        dist.barrier()
        return _load_run(torch.load(final, map_location="cpu", weights_only=False), spec, config, key, run_dir,
                         counts, method, device)
    net.load_state_dict(best["state"])
    for m, s in zip(extras, best["extras"]):
        m.load_state_dict(s)
        m.eval()
    return TrainedRun(model=net.eval(), spec=spec, method=config["method"], config=config, key=key, run_dir=run_dir,
                      history=pd.DataFrame(history), best_epoch=best["epoch"], best_score=best["score"],
                      class_counts=counts, extras=extras)


def _cpu_state(m: nn.Module) -> dict:
    return {k: v.detach().cpu().clone() for k, v in m.state_dict().items()}


def _load_run(ck: dict, spec, config, key, run_dir, counts, method, device) -> TrainedRun:
    net = spec.build()
    net.load_state_dict(ck["model"])
    net.to(device).eval()
    extras = method.setup(net, counts, config["train"]["epochs"])
    for m, s in zip(extras, ck["extras"]):
        m.load_state_dict(s)
        m.to(device).eval()
    return TrainedRun(model=net, spec=spec, method=config["method"], config=config, key=key, run_dir=run_dir,
                      history=pd.DataFrame(ck["history"]), best_epoch=ck["best_epoch"], best_score=ck["best_score"],
                      class_counts=counts, extras=extras)


def retrain_head(stage1: TrainedRun, train_set, val_set=None, kind: str = "crw", cfg: TrainConfig | dict | None = None,
                 **fit_kwargs) -> TrainedRun:
    """Decoupled second stage: frozen features from `stage1`, a re-initialised linear head trained with
    class-weighted CE ("crw") or class-balanced sampling ("crs").

    Default settings follow paper 004 (10 epochs, lr 0.1 cosine-annealed to 1e-6, SGD momentum 0.9).
    """
    if kind not in ("crw", "crs"):
        raise ValueError(f"kind must be 'crw' or 'crs', got {kind!r}")
    base = {"epochs": 10, "lr": 0.1, "schedule": "cosine", "min_lr": 1e-6, "weight_decay": 5e-4}
    if isinstance(cfg, TrainConfig):
        cfg = dataclasses.replace(cfg, freeze_backbone=True)
    else:
        cfg = TrainConfig(**{**base, **(cfg or {}), "freeze_backbone": True})
    spec = dataclasses.replace(stage1.spec, head="linear")
    return fit(spec, build_method(kind), train_set, val_set, cfg, init=stage1, **fit_kwargs)


def retrain_head_features(stage1: TrainedRun, train_set, val_set=None, kind: str = "crw",
                          cfg: TrainConfig | dict | None = None, *, run_root=None, cache: bool = True,
                          progress: bool = True) -> TrainedRun:
    """Decoupled second stage on features extracted once: the frozen backbone of `stage1` runs one pass over
    `train_set` (give it the deterministic test-time transform) and `val_set`; a fresh linear head is trained
    on the cached (N, D) features with class-weighted CE ("crw": inverse-frequency weights summing to C) or
    class-balanced sampling ("crs"). Same settings as `retrain_head` (paper 004: 10 epochs, SGD lr 0.1
    cosine to 1e-6, momentum 0.9, wd 5e-4), best epoch on `val_set` by cfg.select_metric. It costs one forward
    pass instead of `epochs` of them; the price is no augmentation in stage 2. Cached by config like `fit`.
    """
    from kitlib import losses as L

    if kind not in ("crw", "crs"):
        raise ValueError(f"kind must be 'crw' or 'crs', got {kind!r}")
    base = {"epochs": 10, "lr": 0.1, "schedule": "cosine", "min_lr": 1e-6, "weight_decay": 5e-4}
    if isinstance(cfg, TrainConfig):
        cfg = dataclasses.replace(cfg, freeze_backbone=True)
    else:
        cfg = TrainConfig(**{**base, **(cfg or {}), "freeze_backbone": True})
    if cfg.unfreeze_last_block:
        raise ValueError("retrain_head_features: unfreeze_last_block=True cannot train on cached features "
                         "(the block would change them); use retrain_head")
    spec = dataclasses.replace(stage1.spec, head="linear")
    counts = np.asarray(train_set.class_counts())
    method = build_method(kind)
    config = {"model": dataclasses.asdict(spec), "method": method.config(), "train": cfg.identity(),
              "data": {"train": data_fingerprint(train_set),
                       "val": data_fingerprint(val_set) if val_set is not None else None},
              "init": stage1.key, "features": "cached"}
    key = config_key(config)
    run_dir = runs_root(run_root) / key
    device = resolve_device(cfg.device)
    final = run_dir / "final.pt"
    if cache and final.exists():
        ck = _read_checkpoint(final, "cpu", "retraining")
        if ck is not None:
            return _load_run(ck, spec, config, key, run_dir, counts, method, device)

    net = copy.deepcopy(stage1.model).to(device).eval()

    @torch.no_grad()
    def features(ds):
        out = []
        for b in DataLoader(ds, batch_size=cfg.eval_batch_size, num_workers=cfg.num_workers):
            with autocast(device, cfg.amp):
                out.append(net(b["image"].to(device), out="all")["feat"].float())
        return torch.cat(out)

    f_train = features(train_set)
    y_train = torch.as_tensor(np.asarray(train_set.labels), device=device)
    f_val = features(val_set) if val_set is not None else None
    seed_everything(cfg.seed)
    head = nn.Linear(net.feature_dim, net.num_classes).to(device)
    opt = make_optimizer(head.parameters(), cfg)
    sched = LRSchedule(cfg)
    crit = L.CrossEntropy(weight=L.inverse_frequency_weights(counts) if kind == "crw" else None).to(device)
    sampler = build_sampler("instance" if kind == "crw" else "class", y_train.cpu().numpy(), seed=cfg.seed)
    n, bs = len(sampler), cfg.batch_size
    iters = max(1, math.ceil(n / bs))
    history, best = [], {"epoch": -1, "score": None, "state": None}
    for epoch in progress_bar(range(cfg.epochs), desc=f"{spec.name}/{kind} (cached features)",
                              progress=progress, leave=False):
        sampler.set_epoch(epoch)
        order = torch.as_tensor(list(sampler), device=device)
        tot = 0.0
        for i in range(iters):
            for g in opt.param_groups:
                g["lr"] = cfg.lr * sched.factor(epoch + i / iters)
            idx = order[i * bs:(i + 1) * bs]
            loss = crit(head(f_train[idx]), y_train[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            tot += float(loss.detach()) * len(idx)
        logs = {"epoch": epoch, "loss": tot / n, "lr": opt.param_groups[0]["lr"]}
        score = None
        if f_val is not None:
            with torch.no_grad():
                probs = torch.softmax(head(f_val), 1).cpu().numpy()
            mets = M.evaluate(np.asarray(val_set.labels), probs, train_counts=counts, num_classes=len(counts))
            logs.update({f"val_{k}": v for k, v in mets.items()})
            score = float(mets[cfg.select_metric]) if cfg.select_metric else None
        sched.observe(score)
        if score is not None and (best["score"] is None or score > best["score"]):
            best = {"epoch": epoch, "score": score, "state": _cpu_state(head)}
        history.append(logs)
    if best["state"] is None:
        best = {"epoch": cfg.epochs - 1, "score": None, "state": _cpu_state(head)}
    head.load_state_dict(best["state"])
    net.head = head
    net.head_kind = "linear"
    if cache:
        run_dir.mkdir(parents=True, exist_ok=True)
        _atomic_json(config, run_dir / "config.json")
        _atomic_torch_save({"model": _cpu_state(net), "extras": [], "history": history, "best_epoch": best["epoch"],
                            "best_score": best["score"], "config": config}, final)
    return TrainedRun(model=net.eval(), spec=spec, method=config["method"], config=config, key=key, run_dir=run_dir,
                      history=pd.DataFrame(history), best_epoch=best["epoch"], best_score=best["score"],
                      class_counts=counts, extras=[])
