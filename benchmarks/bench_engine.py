"""Benchmark ``--engine ray`` against ``--engine local`` on the same 1000+ images, in one run.

  (a) local      - the stage on the process pool, --workers 2
  (b) ray        - the same stage with --engine ray on a Ray started in this process, 2 actors
  (c) ray 2-node - the same on a two-node Ray cluster on this machine (2 x 1 CPU, loopback), 2 actors:
                   the per-node split of the work
For each run: start-up (from the call to the first output file, by its modification time: pool or Ray
start, actors and their models, the first file) and steady-state throughput (all files over the time
from that first output to the end of the run). Prints ray/local ratios of the steady state, which
stay meaningful on a busy machine where absolute numbers do not. Bar (issue 17): ray >= 0.8x local on 2 cores.

    .venv/bin/python benchmarks/bench_engine.py                       # synth-masks, 1000 crops
    .venv/bin/python benchmarks/bench_engine.py --stage augment --limit 1200
    .venv/bin/python benchmarks/bench_engine.py --limit 200 --no-cluster   # a quick look
"""
from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from maskprep.engines import EngineSpec, use_engine  # noqa: E402
from maskprep.images import list_images  # noqa: E402

SHARED = Path(os.environ.get("MASKPREP_SHARED_DATA", REPO.parent / "shared" / "data"))
DATA = SHARED / "masks" / "chandrikadeb7"


def _stage(name: str):
    """The stage function and its options: the issue's use case (masks on a set of face crops) or augment."""
    if name == "synth":
        from maskprep.masks.synth import synth_masks
        return lambda src, out, **kw: synth_masks(src, out, types="random", wear="mix", assume_crop=True,
                                                  seed=1, progress=False, **kw)
    from maskprep.augment import augment_tree
    return lambda src, out, **kw: augment_tree(src, out, flip=True, blur=True, color_jitter=True, seed=1,
                                               progress=False, **kw).summary


def timed_run(run, src: Path, out: Path, **kwargs) -> dict:
    """Run a stage; split its time into start-up and work at its first output file.

    A worker writes each output the moment it is done, so the first output's modification time says
    when work was flowing, whatever the engine (the driver's manifest writes would not: Ray hands
    results back in order and in batches). Throughput after start-up = all files / (end - first output).
    """
    start = time.time()
    summary = run(src, out, **kwargs)
    end = time.time()
    first = min(p.stat().st_mtime for p in out.rglob("*")
                if p.is_file() and p.name not in ("manifest.jsonl", "run.json"))
    info = json.loads((out / "run.json").read_text())
    return {"files": summary.inputs, "outputs": summary.outputs, "startup_s": first - start,
            "total_s": end - start, "steady_fps": summary.inputs / (end - first),
            "engine": info.get("engine", {})}


def show(label: str, result: dict, baseline: dict | None) -> None:
    ratio = f"  {result['steady_fps'] / baseline['steady_fps']:.2f}x local" if baseline else ""
    print(f"{label:<12} {result['files']:5d} files -> {result['outputs']:5d} outputs; start-up "
          f"{result['startup_s']:5.1f} s; steady {result['steady_fps']:6.1f} files/s; total "
          f"{result['total_s']:6.1f} s{ratio}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stage", choices=("synth", "augment"), default="synth")
    parser.add_argument("--data", type=Path, default=DATA, help="a folder of images (default: chandrikadeb7)")
    parser.add_argument("--limit", type=int, default=1000, help="images to use (default 1000)")
    parser.add_argument("--workers", type=int, default=2, help="local processes = Ray actors (default 2)")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--no-cluster", action="store_true", help="skip the two-node cluster run")
    args = parser.parse_args()

    import ray
    files = list_images(args.data)
    random.Random(0).shuffle(files)  # both classes of chandrikadeb7, not the first folder alone
    files = files[: args.limit]
    if not files:
        sys.exit(f"no images under {args.data} (set MASKPREP_SHARED_DATA or pass --data)")
    run = _stage(args.stage)
    print(f"bench_engine: {args.stage} on {len(files)} images of {args.data}, {args.workers} workers, "
          f"ray {ray.__version__}, batch size {args.batch_size}", flush=True)
    with tempfile.TemporaryDirectory(prefix="bench_engine_") as tmp:
        tmp = Path(tmp)
        src = tmp / "in"
        # A copy: --limit picks a tree, and no stage reads the shared folder's manifests.
        for path in files:
            dest = src / path.relative_to(args.data)
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, dest)
        local = timed_run(run, src, tmp / "local", workers=args.workers)
        show("local", local, None)
        spec = EngineSpec("ray", batch_size=args.batch_size, concurrency=args.workers)
        with use_engine(spec):
            inproc = timed_run(run, src, tmp / "ray", workers=args.workers)
        show("ray", inproc, local)
        ray.shutdown()
        same = all((tmp / "ray" / p.relative_to(tmp / "local")).read_bytes() == p.read_bytes()
                   for p in (tmp / "local").rglob("*.*") if p.name not in ("manifest.jsonl", "run.json"))
        print(f"ray outputs byte-identical to local: {same}")
        if not args.no_cluster:
            from maskprep.engines.cluster import loopback_cluster
            with loopback_cluster(nodes=2, cpus_per_node=1) as address:
                with use_engine(EngineSpec("ray", address=address, batch_size=args.batch_size)):
                    two = timed_run(run, src, tmp / "ray2", workers=args.workers)
            show("ray 2-node", two, local)
            for k, node in enumerate(two["engine"]["nodes"], 1):
                print(f"  node {k} ({node['node_id'][:8]}): {node['files']} files "
                      f"({node['files'] / two['files']:.0%})")
        ratio = inproc["steady_fps"] / local["steady_fps"]
        print(f"ray/local steady state: {ratio:.2f} (bar >= 0.8: {'met' if ratio >= 0.8 else 'NOT met'}); "
              f"start-up {inproc['startup_s']:.1f} s vs {local['startup_s']:.1f} s")


if __name__ == "__main__":
    main()
