"""Benchmark maskprep-train on CPU: training images/second at 128 and 224 px, and the fast-path speed-up.

    .venv/bin/python benchmarks/bench_train.py [--data ../shared/data/masks/chandrikadeb7] [--threads 2]

Timings on a shared machine are noisy, so besides absolute numbers it prints ratios against a baseline
measured in the same run: training throughput relative to the eval-mode forward pass at the same size,
224 px relative to 128 px, and the per-epoch time of the plain loop over the cached-feature fast path
(``--freeze head --augment none``), both through :func:`maskprep_train.engine.fit` on real photos.
Takes about 2-4 minutes on 2 cores.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

# As the maskprep-train command does (see maskprep_train.cli.main): OpenMP threads sleep when idle.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402
import torch  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from maskprep_train.data import load_pixels  # noqa: E402
from maskprep_train.engine import DeviceConfig, TrainConfig, fit, train_step  # noqa: E402
from maskprep_train.model import apply_freeze, build_model, set_train_mode  # noqa: E402


def _files(data: Path, per_class: int) -> list[tuple[Path, int]]:
    out = []
    for label, cls in enumerate(("with_mask", "without_mask")):
        names = sorted(os.listdir(data / cls))[:per_class]
        out += [(data / cls / n, label) for n in names]
    return out


def _batch(files: list[tuple[Path, int]], size: int, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    xs = np.stack([load_pixels(str(f), size) for f, _ in files[:n]])
    return torch.from_numpy(xs), torch.tensor([lab for _, lab in files[:n]])


def throughput(files, size: int, batch: int, steps: int) -> dict[str, float]:
    """Eval-mode forward and full training-step images/second for ResNet50 at ``size`` px."""
    x, y = _batch(files, size, batch)
    torch.manual_seed(0)
    model = build_model("resnet50", 2, "none")
    model.eval()
    with torch.no_grad():
        model(x)  # warm-up
        t = time.perf_counter()
        for _ in range(steps):
            model(x)
        fwd = steps * batch / (time.perf_counter() - t)
    apply_freeze(model, "none")
    set_train_mode(model, "none")
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    crit = torch.nn.CrossEntropyLoss()
    dev = DeviceConfig("cpu")
    train_step(model, x, y, crit, opt, dev)  # warm-up
    t = time.perf_counter()
    for _ in range(steps):
        train_step(model, x, y, crit, opt, dev)
    step_s = (time.perf_counter() - t) / steps
    return {"forward_img_s": fwd, "train_img_s": batch / step_s, "train_step_s": step_s}


def fast_path_speedup(data: Path, per_class: int, size: int, epochs: int) -> dict[str, float]:
    """Per-epoch seconds of the plain loop vs the cached-feature loop, same config otherwise."""
    with tempfile.TemporaryDirectory() as tmp:
        sub = Path(tmp) / "data"
        for _, cls in enumerate(("with_mask", "without_mask")):
            (sub / cls).mkdir(parents=True)
            for n in sorted(os.listdir(data / cls))[:per_class]:
                os.symlink(data / cls / n, sub / cls / n)
        res = {}
        for fast in (False, True):
            cfg = TrainConfig(data=str(sub), out=str(Path(tmp) / f"run{int(fast)}"), weights="none",
                              freeze="head", augment="none", img_size=size, epochs=epochs, batch_size=16,
                              patience=0, fast_path=fast, threads=torch.get_num_threads())
            m = fit(cfg)
            assert m["fast_path"] == fast
            # Epoch 1 of the plain loop pays warm-up; the fast path pays feature extraction before
            # its epoch 1. Compare steady epochs, and report the one-off cost separately.
            per_epoch = float(np.median([e["seconds"] for e in m["epochs"][1:]]))
            res["fast" if fast else "plain"] = {"per_epoch_s": per_epoch, "total_s": m["train_seconds"],
                                                "val_macro_f1": m["final"]["val"]["macro_f1"]}
        return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data" / "masks" / "chandrikadeb7")
    ap.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2, as in CI)")
    ap.add_argument("--steps", type=int, default=3, help="timed training steps per size")
    ap.add_argument("--images", type=int, default=48, help="photos per class for the fast-path runs")
    args = ap.parse_args()
    if not args.data.is_dir():
        sys.exit(f"data folder not found: {args.data} (pass --data)")
    torch.set_num_threads(args.threads)
    files = _files(args.data, 8)
    print(f"maskprep-train CPU benchmark: ResNet50, batch 16, {args.threads} threads, torch {torch.__version__}")
    print("(timings on a shared machine are noisy; trust the ratios more than the absolute numbers)")
    rows = {}
    for size in (128, 224):
        r = throughput(files, size, 16, args.steps)
        rows[size] = r
        print(f"  {size:3d} px  forward {r['forward_img_s']:6.1f} img/s   training {r['train_img_s']:6.1f} img/s"
              f"   ({r['train_step_s']:.2f} s per step of 16)   train/forward ratio "
              f"{r['train_img_s'] / r['forward_img_s']:.2f}")
    print(f"  224 px vs 128 px: training {rows[224]['train_img_s'] / rows[128]['train_img_s']:.2f}x the "
          f"speed (pixel count predicts {(128 / 224) ** 2:.2f}x)")
    fp = fast_path_speedup(args.data, args.images, 128, epochs=3)
    ratio = fp["plain"]["per_epoch_s"] / max(fp["fast"]["per_epoch_s"], 1e-9)
    print(f"fast path (--freeze head --augment none, {2 * args.images} photos, 128 px, 3 epochs):")
    print(f"  plain loop {fp['plain']['per_epoch_s']:.2f} s/epoch, cached features "
          f"{fp['fast']['per_epoch_s'] * 1000:.1f} ms/epoch: {ratio:.0f}x per epoch (goal >= 10x) "
          f"{'PASS' if ratio >= 10 else 'BELOW GOAL'}")
    print(f"  whole run including the one-off feature extraction: {fp['plain']['total_s']:.1f} s vs "
          f"{fp['fast']['total_s']:.1f} s ({fp['plain']['total_s'] / fp['fast']['total_s']:.1f}x); "
          f"val macro-F1 {fp['plain']['val_macro_f1']:.3f} vs {fp['fast']['val_macro_f1']:.3f}")
    print(json.dumps({"throughput": rows, "fast_path": fp, "fast_path_ratio": ratio}))


if __name__ == "__main__":
    main()
