"""The training loop: device set-up, the plain and the cached-feature loops, evaluation, checkpoints.

``fit(TrainConfig(...))`` is the whole of ``maskprep-train DATA``; the CLI only parses options into a
:class:`TrainConfig`. Plain functions, in the spirit of torchvision's reference scripts.
"""
from __future__ import annotations

import copy
import json
import math
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from maskprep_train import distributed as D
from maskprep_train.data import (
    AUGMENTATIONS,
    DataError,
    ImageDataset,
    Sample,
    collate_skip_unreadable,
    load_dataset,
    load_eval_samples,
    read_rgb,
    resize_square,
    split_leaks,
    to_tensor_array,
)
from maskprep.dataset import class_weights
from maskprep_train.metrics import summarize
from maskprep_train.report import fmt_metric
from maskprep_train.model import (
    ARCHS,
    FREEZE_MODES,
    WeightsError,
    apply_freeze,
    backbone_features,
    build_model,
    imagenet_cache_path,
    imagenet_state,
    set_train_mode,
)

CHECKPOINT_NAME = "best.pt"
METRICS_NAME = "metrics.json"
CHECKPOINT_FORMAT = "maskprep-train/1"
OPTIMIZERS = ("adamw", "sgd")
SCHEDULES = ("cosine", "plateau", "none")


@dataclass(frozen=True)
class DeviceConfig:
    """What the engine does on the chosen device; CUDA gets the fast paths, CPU the plain ones."""

    device: str                    # "cuda:N" or "cpu"
    amp_dtype: str | None = None   # "bfloat16", "float16" or None (full float32)
    channels_last: bool = False
    pin_memory: bool = False
    cudnn_benchmark: bool = False

    @property
    def is_cuda(self) -> bool:
        """True for a CUDA device."""
        return self.device.startswith("cuda")


def choose_device(requested: str, cuda_available: bool, bf16_supported: bool = False,
                  amp: bool = True, local_rank: int = 0) -> DeviceConfig:
    """Pick the device and its speed-ups from what was asked and what the machine has (pure).

    ``auto`` takes the GPU when there is one. On CUDA, ``amp`` uses bfloat16 where the GPU supports it
    (no loss scaling needed) and float16 otherwise; channels_last, cudnn.benchmark and pinned memory
    are on. On CPU everything stays float32 (CPU autocast is slower than it saves for training here).
    """
    if requested not in ("auto", "cuda", "cpu"):
        raise ValueError(f"device must be auto, cuda or cpu, not {requested!r}")
    if requested == "cuda" and not cuda_available:
        raise ValueError("--device cuda was asked for but no CUDA GPU is visible; use --device auto or cpu")
    if requested == "cpu" or not cuda_available:
        return DeviceConfig("cpu")
    dtype = ("bfloat16" if bf16_supported else "float16") if amp else None
    return DeviceConfig(f"cuda:{local_rank}", dtype, channels_last=True, pin_memory=True,
                        cudnn_benchmark=True)


def default_loader_workers(cpus: int, procs_per_node: int) -> int:
    """Decoding workers per process: none on a 2-core box (they would fight the math threads)."""
    per_proc = max(1, cpus // max(1, procs_per_node))
    return 0 if per_proc <= 2 else min(4, per_proc - 1)


def default_lr(freeze: str, optimizer: str) -> float:
    """A sensible learning rate: a fresh head takes large steps, a fine-tuned backbone small ones."""
    base = 1e-3 if freeze == "head" else 3e-4
    return base * (30 if optimizer == "sgd" else 1)


@dataclass
class TrainConfig:
    """Every option of ``maskprep-train DATA``, with the command's defaults."""

    data: str
    out: str | None = None
    test: str | None = None
    arch: str = "resnet50"
    weights: str = "imagenet"
    freeze: str = "layer4"
    epochs: int = 10
    batch_size: int = 32
    lr: float | None = None
    weight_decay: float = 1e-4
    optimizer: str = "adamw"
    schedule: str = "cosine"
    img_size: int = 224
    augment: str = "light"
    device: str = "auto"
    amp: bool = True
    val_fraction: float = 0.15
    class_weights: str = "auto"
    patience: int = 5
    seed: int = 0
    workers: int | None = None
    fast_path: bool = True
    overwrite: bool = False
    threads: int | None = None
    log: Callable[[str], None] | None = field(default=None, repr=False)

    def check(self) -> None:
        """Refuse bad option values before any work (one clear line each)."""
        checks = [(self.arch in ARCHS, f"--arch must be one of {ARCHS}"),
                  (self.freeze in FREEZE_MODES, f"--freeze must be one of {FREEZE_MODES}"),
                  (self.optimizer in OPTIMIZERS, f"--optimizer must be one of {OPTIMIZERS}"),
                  (self.schedule in SCHEDULES, f"--schedule must be one of {SCHEDULES}"),
                  (self.augment in AUGMENTATIONS, f"--augment must be one of {AUGMENTATIONS}"),
                  (self.class_weights in ("auto", "none"), "--class-weights must be auto or none"),
                  (self.epochs >= 1, "--epochs must be at least 1"),
                  (self.batch_size >= 1, "--batch-size must be at least 1"),
                  (self.img_size >= 32, "--img-size must be at least 32 (ResNet downsamples 32x)"),
                  (0 < self.val_fraction < 1, "--val-fraction must be between 0 and 1"),
                  (self.seed >= 0, "--seed must be 0 or more (numpy's generators refuse negative seeds)")]
        for ok, message in checks:
            if not ok:
                raise ValueError(message)

    def to_json(self) -> dict[str, Any]:
        """The options as a JSON-ready dict (without the log callback), for metrics.json."""
        d = asdict(self)
        d.pop("log", None)
        return d


# ----------------------------------------------------------------------------- small helpers

def _torch():
    import torch
    return torch


def setup_device(cfg: TrainConfig, info: D.DistInfo) -> DeviceConfig:
    """Resolve the device and apply the process-wide settings (threads, cudnn)."""
    torch = _torch()
    cuda = torch.cuda.is_available()
    bf16 = bool(cuda and torch.cuda.is_bf16_supported())
    dev = choose_device(cfg.device, cuda, bf16, cfg.amp, info.local_rank)
    if dev.is_cuda:
        torch.backends.cudnn.benchmark = dev.cudnn_benchmark
    elif cfg.threads or info.local_world_size > 1:
        # Share the cores between the ranks on this node instead of oversubscribing them; a single
        # process keeps torch's own choice (OMP_NUM_THREADS or the caller's set_num_threads).
        threads = cfg.threads or max(1, (os.cpu_count() or 1) // info.local_world_size)
        torch.set_num_threads(threads)
    return dev


def _autocast(dev: DeviceConfig):
    torch = _torch()
    if dev.amp_dtype is None:
        return torch.autocast("cpu", enabled=False)
    return torch.autocast("cuda", dtype=getattr(torch, dev.amp_dtype))


def _to_device(x: Any, dev: DeviceConfig) -> Any:
    x = x.to(dev.device, non_blocking=dev.pin_memory)
    if dev.channels_last and x.dim() == 4:
        x = x.contiguous(memory_format=_torch().channels_last)
    return x


def _loader(dataset: Any, batch_size: int, dev: DeviceConfig, workers: int, sampler: Any = None,
            shuffle: bool = False, generator: Any = None) -> Any:
    torch = _torch()
    return torch.utils.data.DataLoader(
        dataset, batch_size=batch_size, sampler=sampler, shuffle=shuffle if sampler is None else False,
        num_workers=workers, pin_memory=dev.pin_memory, collate_fn=collate_skip_unreadable,
        generator=generator, drop_last=False)


def _unwrap(model: Any) -> Any:
    return getattr(model, "module", model)


def _gather_predictions(parts: list[tuple[list[int], np.ndarray, np.ndarray]],
                        n_classes: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Merge per-rank ``(indices, labels, probs)`` back into dataset order; returns (index, y, probs)."""
    idx = np.concatenate([np.asarray(p[0], np.int64) for p in parts]) if parts else np.zeros(0, np.int64)
    ys = np.concatenate([np.asarray(p[1], np.int64) for p in parts]) if parts else np.zeros(0, np.int64)
    pr = (np.concatenate([np.asarray(p[2], np.float64).reshape(-1, n_classes) for p in parts])
          if parts else np.zeros((0, n_classes)))
    order = np.argsort(idx, kind="stable")
    return idx[order], ys[order], pr[order]


# ----------------------------------------------------------------------------- evaluation

def _sharded_outputs(model: Any, samples: Sequence[Sample], img_size: int, dev: DeviceConfig,
                     batch_size: int, workers: int, info: D.DistInfo, apply: Callable[[Any], Any],
                     width: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``apply(model input batch)`` over ``samples`` in eval mode, without augmentation.

    Under torchrun each rank takes every world_size-th sample and the results are gathered back into
    dataset order, so every rank returns ``(readable indices, labels, outputs (n, width))`` for the
    whole set. Unreadable files are left out.
    """
    torch = _torch()
    model.eval()
    ds = ImageDataset(samples, img_size, "none")
    mine = list(range(info.rank, len(ds), info.world_size))
    loader = _loader(torch.utils.data.Subset(ds, mine), batch_size, dev, workers)
    idx, ys, outs = [], [], []
    with torch.no_grad():
        for batch in loader:
            if batch is None:
                continue
            x, y, i = batch
            with _autocast(dev):
                out = apply(_to_device(x, dev))
            outs.append(out.float().cpu().numpy())
            ys.append(y.numpy())
            idx.append(i.numpy())
    local = (np.concatenate(idx).tolist() if idx else [], np.concatenate(ys) if ys else np.zeros(0),
             np.concatenate(outs) if outs else np.zeros((0, width), np.float32))
    return _gather_predictions(D.gather(local, info), width)


def predict_samples(model: Any, samples: Sequence[Sample], img_size: int, dev: DeviceConfig,
                    batch_size: int = 32, workers: int = 0,
                    info: D.DistInfo = D.DistInfo()) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Class probabilities for ``samples`` in eval mode: ``(readable indices, labels, probs)``."""
    torch = _torch()
    n_classes = _unwrap(model).fc[-1].out_features
    return _sharded_outputs(model, samples, img_size, dev, batch_size, workers, info,
                            lambda x: torch.softmax(model(x).float(), 1), n_classes)


def _loss_of(probs: np.ndarray, y: np.ndarray, weights: np.ndarray | None) -> float | None:
    """Mean (class-weighted) cross-entropy from probabilities, as the training criterion computes it."""
    if len(y) == 0:
        return None
    nll = -np.log(np.clip(probs[np.arange(len(y)), y], 1e-12, 1.0))
    if weights is None:
        return float(nll.mean())
    w = weights[y]
    return float((w * nll).sum() / max(w.sum(), 1e-12))


# ----------------------------------------------------------------------------- checkpoints

def save_checkpoint(path: Path, model: Any, classes: Sequence[str], cfg: TrainConfig, epoch: int,
                    val: dict[str, Any]) -> None:
    """Atomically write a checkpoint that ``torch.load(weights_only=True)`` can read back."""
    torch = _torch()
    state = {k: v.detach().cpu() for k, v in _unwrap(model).state_dict().items()}
    ckpt = {"format": CHECKPOINT_FORMAT, "model": state, "arch": cfg.arch, "classes": list(classes),
            "img_size": cfg.img_size, "epoch": epoch, "val": json.loads(json.dumps(val))}
    tmp = path.with_name(f".{path.name}.tmp")
    torch.save(ckpt, tmp)
    os.replace(tmp, path)


def load_checkpoint(path: str | os.PathLike) -> tuple[Any, dict[str, Any]]:
    """``(model in eval mode on CPU, checkpoint metadata)`` from a ``best.pt`` written by :func:`fit`."""
    torch = _torch()
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"checkpoint not found: {path}")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise WeightsError(f"{path}: not a maskprep-train checkpoint ({type(exc).__name__})") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        raise WeightsError(f"{path}: not a maskprep-train checkpoint (use --weights PATH to start "
                           "training from a plain state_dict)")
    problem = _checkpoint_problem(ckpt)
    if problem:
        raise WeightsError(f"{path}: damaged maskprep-train checkpoint: {problem}")
    model = build_model(ckpt["arch"], len(ckpt["classes"]), "none")
    try:
        model.load_state_dict(ckpt["model"])
    except (RuntimeError, KeyError, TypeError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise WeightsError(f"{path}: damaged maskprep-train checkpoint: weights do not fit a "
                           f"{ckpt['arch']} with {len(ckpt['classes'])} classes ({first[:200]})") from None
    model.eval()
    meta = {k: v for k, v in ckpt.items() if k != "model"}
    return model, meta


def _checkpoint_problem(ckpt: dict[str, Any]) -> str:
    """What is wrong with a checkpoint's fields ('' when nothing): each would otherwise surface as
    a traceback somewhere in model building or preprocessing."""
    if not isinstance(ckpt.get("model"), dict):
        return "no 'model' weights"
    if ckpt.get("arch") not in ARCHS:
        return f"'arch' must be one of {', '.join(ARCHS)}, not {ckpt.get('arch')!r}"
    classes = ckpt.get("classes")
    if not (isinstance(classes, list) and len(classes) >= 2 and all(isinstance(c, str) and c for c in classes)
            and len(set(classes)) == len(classes)):
        return "'classes' must be a list of at least 2 distinct class names"
    size = ckpt.get("img_size")
    if isinstance(size, bool) or not isinstance(size, int) or not 32 <= size <= 4096:
        return f"'img_size' must be a whole number of pixels from 32 to 4096, not {size!r}"
    return ""


def _readable_training_files(ds: Any, say: Callable[[str], None]) -> dict[str, int]:
    """Drop training samples whose file cannot be opened as an image (checked from the header:
    cheap), say so, and refuse a class left with no readable training image. Returns
    ``{reason: count}`` of the dropped files.

    Without this the class counts and class weights included files that never reach the model,
    and a class of unreadable files still got a verdict. (Unreadable val/test files are counted
    in their split's final metrics.)
    """
    from collections import Counter

    from maskprep.images import ImageReadError, probe_image, scan_images
    # Folders that cannot be read (and dangling links, FIFOs) are not in the dataset at all: say so.
    unlisted = scan_images(ds.root)[1]
    if unlisted:
        shown = ", ".join(f"{os.path.relpath(u.path, ds.root)} ({u.reason})" for u in unlisted[:5])
        say(f"skipped {len(unlisted)} unreadable entr{'y' if len(unlisted) == 1 else 'ies'} under "
            f"{ds.root}: {shown}" + (", ..." if len(unlisted) > 5 else ""))
    kept, reasons = [], Counter()
    for sample in ds.splits.get("train", []):
        try:
            probe_image(sample.path)
            kept.append(sample)
        except ImageReadError as exc:
            reasons[exc.reason] += 1
    if reasons:
        ds.splits["train"] = kept
        say(f"skipped {sum(reasons.values())} unreadable training file(s): "
            + ", ".join(f"{n} {r}" for r, n in reasons.most_common()))
    present = {s.label for s in kept}
    empty = [c for i, c in enumerate(ds.classes) if i not in present]
    if empty:
        raise DataError(f"{ds.root}: class {', '.join(map(repr, empty))} has no readable training "
                        "image; fix or remove its files, or remove the class folder")
    return dict(reasons)


# ----------------------------------------------------------------------------- the fit

def _make_optimizer(params: list, cfg: TrainConfig, lr: float) -> Any:
    torch = _torch()
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=0.9, weight_decay=cfg.weight_decay, nesterov=True)
    return torch.optim.AdamW(params, lr=lr, weight_decay=cfg.weight_decay)


def _make_schedule(opt: Any, cfg: TrainConfig) -> Any:
    torch = _torch()
    if cfg.schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=cfg.epochs)
    if cfg.schedule == "plateau":
        return torch.optim.lr_scheduler.ReduceLROnPlateau(opt, mode="max", factor=0.3, patience=1)
    return None


def _better(val: dict[str, Any], best: dict[str, Any] | None) -> bool:
    """Best epoch = highest val macro-F1; a tie goes to the lower val loss."""
    if best is None:
        return True
    f, bf = val.get("macro_f1") or 0.0, best.get("macro_f1") or 0.0
    if f != bf:
        return f > bf
    loss, best_loss = val.get("loss"), best.get("loss")  # 0.0 is a perfect loss, not a missing one
    return (math.inf if loss is None else loss) < (math.inf if best_loss is None else best_loss)


def resolve_out_dir(cfg: TrainConfig) -> Path:
    """``--out`` or ``runs/<data folder name>-<time>``; refuses to mix with an earlier run's report."""
    if cfg.out:
        out = Path(cfg.out)
    else:
        out = Path("runs") / f"{Path(cfg.data).resolve().name}-{time.strftime('%Y%m%d-%H%M%S')}"
    from maskprep.outpaths import check_output_dir
    # Not inside DATA or --test: curves.png in a class folder would be read as a photo next time.
    check_output_dir(out, "--out", reads=[cfg.data, cfg.test])
    if (out / METRICS_NAME).exists() and not cfg.overwrite:
        raise ValueError(f"{out} already holds a training report; pass --overwrite or another --out")
    return out


def fit(cfg: TrainConfig) -> dict[str, Any]:
    """Train, keep the best epoch by val macro-F1, evaluate it on train/val/test and write the report.

    Returns the metrics dictionary written to ``metrics.json`` (on every rank). Raises ValueError
    subclasses (DataError, WeightsError) for problems with the data, weights or options.
    """
    from maskprep_train.report import write_report

    cfg.check()
    torch = _torch()
    log = cfg.log or (lambda s: None)
    info = D.init_distributed(use_cuda=torch.cuda.is_available() and cfg.device != "cpu")
    try:
        if cfg.weights == "imagenet" and not imagenet_cache_path(cfg.arch).is_file():
            imagenet_state(cfg.arch)  # download now (or fail with the clear offline error) before any work
        out = resolve_out_dir(cfg)  # on every rank, so a refusal stops them all
        dev = setup_device(cfg, info)
        ds = load_dataset(cfg.data, cfg.test, cfg.val_fraction, cfg.seed)
        n_classes = len(ds.classes)
        say = log if info.is_main else (lambda s: None)
        unreadable = _readable_training_files(ds, say)
        say(f"classes: {', '.join(ds.classes)}; {ds.split_source}")
        for split, counts in ds.counts().items():
            say(f"  {split:5s} " + "  ".join(f"{c}={n}" for c, n in counts.items()))
        leaks = split_leaks(ds)
        for line in ds.split_warnings:
            say(f"warning: {line}")
        if not ds.splits.get("val"):
            raise ValueError("no validation images: the dataset is too small to split; add photos or a val/ folder")
        torch.manual_seed(cfg.seed)
        model = build_model(cfg.arch, n_classes, cfg.weights)
        apply_freeze(model, cfg.freeze)
        if cfg.weights == "none" and cfg.freeze != "none":
            say(f"note: --weights none with --freeze {cfg.freeze} trains on a random, frozen backbone; "
                "use --freeze none to train from scratch")
        model.to(dev.device)
        if dev.channels_last:
            model.to(memory_format=torch.channels_last)
        counts = ds.counts()["train"]
        imbalance = max(counts.values()) / max(min(counts.values()), 1)
        use_w = cfg.class_weights == "auto" and imbalance > 1.2
        weights = np.array([w for w in class_weights(counts).values()], np.float32) if use_w else None
        if use_w:
            say(f"class weights (imbalance {imbalance:.1f}x): " + ", ".join(
                f"{c}={w:.2f}" for c, w in zip(ds.classes, weights)))
        workers = cfg.workers if cfg.workers is not None else default_loader_workers(
            os.cpu_count() or 1, info.local_world_size)
        lr = cfg.lr if cfg.lr is not None else default_lr(cfg.freeze, cfg.optimizer)
        fast = cfg.fast_path and cfg.freeze == "head" and cfg.augment == "none"
        say(f"{cfg.arch} on {dev.device}{' (' + dev.amp_dtype + ')' if dev.amp_dtype else ''}, "
            f"{info.world_size} process(es), freeze {cfg.freeze} "
            f"({sum(p.numel() for p in model.parameters() if p.requires_grad):,} trainable parameters), lr {lr:g}, "
            f"{'cached-feature fast path' if fast else 'full loop'}")
        if info.is_main:
            out.mkdir(parents=True, exist_ok=True)

        def on_best(epoch: int, val_m: dict[str, Any]) -> None:
            # Written at every new best, so an interrupted run still leaves its best epoch behind.
            if info.is_main:
                save_checkpoint(out / CHECKPOINT_NAME, model, ds.classes, cfg, epoch, val_m)

        t0 = time.perf_counter()
        runner = _fit_cached if fast else _fit_plain
        history, best_state, best_epoch, stopped_early = runner(
            model, ds, cfg, dev, info, weights, lr, workers, say, on_best)
        train_seconds = time.perf_counter() - t0
        _unwrap(model).load_state_dict(best_state)
        final = {}
        for split in ("train", "val", "test"):
            samples = ds.splits.get(split)
            if not samples:
                continue
            idx, y, probs = predict_samples(_unwrap(model), samples, cfg.img_size, dev,
                                            cfg.batch_size, workers, info)
            final[split] = summarize(y, probs, _loss_of(probs, y, weights))
            final[split]["unreadable"] = len(samples) - len(idx)
            if split == "train":   # with the files left out before training
                final[split]["unreadable"] += sum(unreadable.values())
            if split in ("val", "test"):
                final[split]["_roc_inputs"] = (y, probs)
        result = {
            "config": cfg.to_json() | {"lr": lr, "workers": workers},
            "classes": ds.classes, "data_root": ds.root, "split_source": ds.split_source,
            "counts": ds.counts(), "ignored_files": ds.ignored, "split_warnings": ds.split_warnings,
            "shared_groups": {pair: v["confirmed"] for pair, v in leaks.items()}, "leak_candidates": leaks,
            "device": asdict(dev), "world_size": info.world_size, "fast_path": fast,
            "class_weights": None if weights is None else weights.tolist(),
            "epochs": history, "best_epoch": best_epoch, "stopped_early": stopped_early,
            "train_seconds": round(train_seconds, 3), "final": final,
        }
        if info.is_main:
            # Same weights as at that epoch; rewritten so its "val" block holds the full final metrics.
            save_checkpoint(out / CHECKPOINT_NAME, model, ds.classes, cfg, best_epoch,
                            {k: v for k, v in final["val"].items() if not k.startswith("_")})
            with open(out / "split.json", "w", encoding="utf-8") as fh:
                json.dump({k: [s.rel for s in v] for k, v in ds.splits.items()}, fh, indent=1)
            result = write_report(out, result, say)
        else:
            from maskprep_train.report import gap_verdict
            for split in final.values():
                split.pop("_roc_inputs", None)
            result["verdict"] = gap_verdict(final, ds.root, leaks, ds.split_warnings, ds.classes)
        D.barrier(info)
        return result
    finally:
        D.cleanup(info)


def _epoch_record(epoch: int, lr: float, train: dict[str, Any], val: dict[str, Any], seconds: float) -> dict:
    keys = ("loss", "accuracy", "macro_f1", "roc_auc")
    return {"epoch": epoch, "lr": lr, "seconds": round(seconds, 3),
            "train": {k: train.get(k) for k in keys}, "val": {k: val.get(k) for k in keys}}


def _early_stop_loop(cfg: TrainConfig, model: Any, opt: Any, sched: Any, info: D.DistInfo,
                     run_epoch: Callable[[int], tuple[dict, dict]], say: Callable[[str], None],
                     on_best: Callable[[int, dict], None] | None = None):
    """Shared epoch loop: run, record, keep the best state, step the schedule, stop on patience."""
    history, best, best_state, best_epoch, since = [], None, None, 0, 0
    stopped = False
    for epoch in range(1, cfg.epochs + 1):
        t = time.perf_counter()
        lr_now = opt.param_groups[0]["lr"]
        train_m, val_m = run_epoch(epoch)
        history.append(_epoch_record(epoch, lr_now, train_m, val_m, time.perf_counter() - t))
        mark = ""
        if _better(val_m, best):
            best, best_epoch, since, mark = val_m, epoch, 0, "  *best"
            best_state = copy.deepcopy({k: v.detach().cpu() for k, v in _unwrap(model).state_dict().items()})
            if on_best is not None:
                on_best(epoch, val_m)
        else:
            since += 1
        say(f"epoch {epoch:3d}  loss {fmt_metric(train_m.get('loss'), 4)}"
            f"  val loss {fmt_metric(val_m.get('loss'), 4)}"
            f"  val acc {fmt_metric(val_m.get('accuracy'))}  val F1 {fmt_metric(val_m.get('macro_f1'))}"
            f"  ({time.perf_counter() - t:.1f}s){mark}")
        if sched is not None:
            if cfg.schedule == "plateau":
                sched.step(val_m.get("macro_f1") or 0.0)
            else:
                sched.step()
        if cfg.patience > 0 and since >= cfg.patience and epoch < cfg.epochs:
            say(f"early stop: no val macro-F1 gain for {cfg.patience} epochs; best was epoch {best_epoch}")
            stopped = True
            break
    return history, best_state, best_epoch, stopped


def train_step(net: Any, x: Any, y: Any, criterion: Any, opt: Any, dev: DeviceConfig,
               scaler: Any = None) -> tuple[Any, float]:
    """One optimisation step on a batch already on the device: ``(detached logits, loss value)``.

    Autocast follows ``dev`` (bf16/fp16 on CUDA); the loss is computed in float32; a GradScaler is
    used only for fp16, where small gradients would underflow.
    """
    with _autocast(dev):
        logits = net(x)
    loss = criterion(logits.float(), y)
    opt.zero_grad(set_to_none=True)
    if scaler is not None and scaler.is_enabled():
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
    else:
        loss.backward()
        opt.step()
    return logits.detach(), float(loss.detach())


def _fit_plain(model, ds, cfg: TrainConfig, dev: DeviceConfig, info: D.DistInfo, weights, lr, workers, say,
               on_best=None):
    """The full loop: images through the whole network every epoch (DDP under torchrun)."""
    torch = _torch()
    n_classes = len(ds.classes)
    train_ds = ImageDataset(ds.splits["train"], cfg.img_size, cfg.augment, cfg.seed)
    if info.enabled:
        sampler = torch.utils.data.distributed.DistributedSampler(
            train_ds, num_replicas=info.world_size, rank=info.rank, shuffle=True, seed=cfg.seed)
        gen = None
    else:
        sampler = None
        gen = torch.Generator().manual_seed(cfg.seed)
    loader = _loader(train_ds, cfg.batch_size, dev, workers, sampler=sampler, shuffle=True, generator=gen)
    net = model
    if info.enabled:
        from torch.nn.parallel import DistributedDataParallel as DDP
        net = DDP(model, device_ids=[info.local_rank] if dev.is_cuda else None)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = _make_optimizer(params, cfg, lr)
    sched = _make_schedule(opt, cfg)
    w = None if weights is None else torch.tensor(weights, device=dev.device)
    criterion = torch.nn.CrossEntropyLoss(weight=w)
    scaler = torch.amp.GradScaler("cuda", enabled=dev.amp_dtype == "float16")

    def run_epoch(epoch: int) -> tuple[dict, dict]:
        train_ds.set_epoch(epoch)
        if sampler is not None:
            sampler.set_epoch(epoch)
        set_train_mode(model, cfg.freeze)
        ys, probs, losses, sizes = [], [], [], []
        for batch in loader:
            if batch is None:  # every file of this batch was unreadable
                if not info.enabled:
                    continue
                # Under DDP every rank must take part in each gradient all-reduce, or the others
                # wait for ever: step on one blank image with a zero loss instead of skipping.
                blank = torch.zeros(1, 3, cfg.img_size, cfg.img_size)
                train_step(net, _to_device(blank, dev), torch.zeros(1, dtype=torch.long, device=dev.device),
                           lambda logits, y: logits.sum() * 0.0, opt, dev, scaler)
                continue
            x, y, _ = batch
            x, y = _to_device(x, dev), y.to(dev.device)
            logits, loss = train_step(net, x, y, criterion, opt, dev, scaler)
            losses.append(loss * len(y))
            sizes.append(len(y))
            ys.append(y.cpu().numpy())
            probs.append(torch.softmax(logits.float(), 1).cpu().numpy())
        # Running numbers (augmentation and dropout on), merged over ranks.
        local = (float(sum(losses)), int(sum(sizes)),
                 np.concatenate(ys) if ys else np.zeros(0, np.int64),
                 np.concatenate(probs) if probs else np.zeros((0, n_classes)))
        parts = D.gather(local, info)
        total_loss, total_n = sum(p[0] for p in parts), sum(p[1] for p in parts)
        train_m = summarize(np.concatenate([p[2] for p in parts]), np.concatenate([p[3] for p in parts]),
                            total_loss / max(total_n, 1))
        _, yv, pv = predict_samples(model, ds.splits["val"], cfg.img_size, dev, cfg.batch_size, workers, info)
        val_m = summarize(yv, pv, _loss_of(pv, yv, weights))
        return train_m, val_m

    return _early_stop_loop(cfg, model, opt, sched, info, run_epoch, say, on_best)


def extract_features(model: Any, samples: Sequence[Sample], img_size: int, dev: DeviceConfig,
                     batch_size: int, workers: int, info: D.DistInfo) -> tuple[np.ndarray, Any, Any]:
    """Pooled backbone features of every readable sample, once: ``(readable indices, features, labels)``."""
    torch = _torch()
    index, labels, features = _sharded_outputs(
        model, samples, img_size, dev, batch_size, workers, info,
        lambda x: backbone_features(model, x), model.fc[-1].in_features)
    return index, torch.from_numpy(features.astype(np.float32)), torch.from_numpy(labels)


def _fit_cached(model, ds, cfg: TrainConfig, dev: DeviceConfig, info: D.DistInfo, weights, lr, workers, say,
                on_best=None):
    """The fast path for ``--freeze head`` without augmentation: the frozen backbone sees each image once.

    The head then trains on cached pooled features; every rank trains the same tiny head on the same
    gathered features with the same seed, so ranks stay identical without DDP.
    """
    torch = _torch()
    t = time.perf_counter()
    feats = {}
    for split in ("train", "val"):
        _, f, y = extract_features(model, ds.splits[split], cfg.img_size, dev, cfg.batch_size, workers, info)
        feats[split] = (f.to(dev.device), y.to(dev.device))
    say(f"cached backbone features of {sum(len(v[1]) for v in feats.values())} images "
        f"in {time.perf_counter() - t:.1f}s")
    head = model.fc
    opt = _make_optimizer([p for p in head.parameters() if p.requires_grad], cfg, lr)
    sched = _make_schedule(opt, cfg)
    w = None if weights is None else torch.tensor(weights, device=dev.device)
    criterion = torch.nn.CrossEntropyLoss(weight=w)
    gen = torch.Generator().manual_seed(cfg.seed)
    ft, yt = feats["train"]
    fv, yv = feats["val"]

    def run_epoch(epoch: int) -> tuple[dict, dict]:
        head.train()
        order = torch.randperm(len(yt), generator=gen).to(dev.device)
        total, probs_all, ys_all = 0.0, [], []
        for s in range(0, len(order), cfg.batch_size):
            b = order[s:s + cfg.batch_size]
            logits = head(ft[b])
            loss = criterion(logits.float(), yt[b])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += float(loss.detach()) * len(b)
            probs_all.append(torch.softmax(logits.detach().float(), 1).cpu().numpy())
            ys_all.append(yt[b].cpu().numpy())
        train_m = summarize(np.concatenate(ys_all), np.concatenate(probs_all), total / max(len(yt), 1))
        head.eval()
        with torch.no_grad():
            pv = torch.softmax(head(fv).float(), 1).cpu().numpy()
        yv_np = yv.cpu().numpy()
        return train_m, summarize(yv_np, pv, _loss_of(pv, yv_np, weights))

    return _early_stop_loop(cfg, model, opt, sched, info, run_epoch, say, on_best)


# ----------------------------------------------------------------------------- using a checkpoint

def evaluate(checkpoint: str | os.PathLike, data: str | os.PathLike, batch_size: int = 32,
             device: str = "auto", workers: int = 0) -> dict[str, Any]:
    """Metrics of a saved checkpoint on a class-folder tree (its classes must be the model's)."""
    model, meta = load_checkpoint(checkpoint)
    torch = _torch()
    dev = choose_device(device, torch.cuda.is_available(), False, False)
    model.to(dev.device)
    samples = load_eval_samples(data, meta["classes"])
    idx, y, probs = predict_samples(model, samples, meta["img_size"], dev, batch_size, workers)
    result = summarize(y, probs, _loss_of(probs, y, None))
    result["unreadable"] = len(samples) - len(idx)
    result["classes"] = meta["classes"]
    return result


# A face covering less of the picture than this is in a whole photo, not in a crop like detect writes.
# Measured (HOG box area / picture area): detect crops 0.37-0.53; eight identity photos 0.02-0.20,
# and 0.36 for a tight head-and-shoulders portrait (close enough to a crop to pass).
CROP_MIN_FACE_SHARE = 0.25


def crop_warning(image: np.ndarray) -> str | None:
    """Why ``image`` does not look like a face crop (several faces, or a small face in a big picture),
    or None. Pictures where no face is found (tight crops often) get no warning."""
    from maskprep.faces import find_faces
    faces = find_faces(image, max_side=640, crops="off").faces   # false faces are refused, as in detect
    if not faces:
        return None
    if len(faces) > 1:
        return f"{len(faces)} faces in one picture"
    l, t, r, b = faces[0].box
    share = (r - l) * (b - t) / float(image.shape[0] * image.shape[1])
    if share < CROP_MIN_FACE_SHARE:
        return f"the face covers {share:.0%} of the picture"
    return None


def predict(checkpoint: str | os.PathLike, images: Sequence[str | os.PathLike],
            device: str = "auto", detect: bool = False) -> list[dict[str, Any]]:
    """``[{path, class, confidence, probabilities}]`` per image; unreadable files get ``error``.

    The model was trained on face crops. Without ``detect``, a picture that looks like a whole photo
    gets a ``warning`` (see :func:`crop_warning`). With ``detect``, faces are found and cropped as
    ``maskprep detect`` does, and there is one result per face (``face``: 1 = largest, ``box``); a
    photo without a face gets ``error: "no face"``.
    """
    from maskprep.images import ImageReadError
    model, meta = load_checkpoint(checkpoint)
    torch = _torch()
    dev = choose_device(device, torch.cuda.is_available(), False, False)
    model.to(dev.device)
    out = []

    def classify(pixels: np.ndarray) -> dict[str, Any]:
        x = torch.from_numpy(to_tensor_array(resize_square(pixels, meta["img_size"])))[None]
        p = torch.softmax(model(x.to(dev.device)).float(), 1)[0].cpu().numpy()
        k = int(p.argmax())
        return {"class": meta["classes"][k], "confidence": float(p[k]),
                "probabilities": {c: float(v) for c, v in zip(meta["classes"], p)}}

    with torch.no_grad():
        for path in images:
            try:
                image = read_rgb(str(path))
            except ImageReadError as exc:
                out.append({"path": str(path), "error": exc.reason})
                continue
            if not detect:
                result = {"path": str(path), **classify(image)}
                warning = crop_warning(image)
                if warning:
                    result["warning"] = f"not a face crop like the training images: {warning}"
                out.append(result)
                continue
            from maskprep.faces import align_face, find_faces
            faces = find_faces(image).faces   # the face finder detect uses: crops, no false faces
            if not faces:
                out.append({"path": str(path), "error": "no face"})
            for k, face in enumerate(faces, start=1):
                crop, _ = align_face(image, face)
                out.append({"path": str(path), "face": k, "box": [int(v) for v in face.box], **classify(crop)})
    return out
