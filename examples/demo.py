"""The whole maskprep pipeline on a tiny bundled example, in a few minutes on a 2-core CPU.

    python examples/demo.py                 # the bundled example (two public-domain portraits)
    python examples/demo.py --data PHOTOS/  # your own folder of unmasked photos instead

Every step is a real `maskprep` / `maskprep-train` command, printed before it runs, the same
commands the README shows. Outputs go to demo_out/ (or --out).
"""
from __future__ import annotations

import argparse
import os
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from maskprep.images import list_images, read_image, write_image
from maskprep.manifest import MANIFEST_NAME, ManifestWriter, Record

def bundled_portraits() -> list[Path]:
    """Public-domain portraits that installed packages already carry (no photo is shipped here)."""
    import matplotlib
    import skimage

    return [Path(skimage.__file__).parent / "data" / "astronaut.png",
            Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg"]


def make_example_photos(out: Path) -> None:
    """A small 'photo collection' from the two portraits: each shot at a few scales, crops and
    exposures, recorded in a manifest whose origin is the portrait (so later stages and the trainer
    know all shots of one portrait belong together)."""
    out.mkdir(parents=True, exist_ok=True)
    shots = [("full", 1.0, 1.0, 0.0), ("tight", 0.8, 1.0, 0.0), ("dim", 1.0, 0.7, 0.0),
             ("tilt", 0.9, 1.15, 8.0)]
    import cv2

    with ManifestWriter(out / MANIFEST_NAME, truncate=True) as manifest:
        for portrait in bundled_portraits():
            image = read_image(portrait)
            h, w = image.shape[:2]
            for name, crop, gain, angle in shots:
                ch, cw = int(h * crop), int(w * crop)
                y0, x0 = (h - ch) // 2, (w - cw) // 2
                shot = image[y0:y0 + ch, x0:x0 + cw]
                if angle:
                    matrix = cv2.getRotationMatrix2D((cw / 2, ch / 2), angle, 1.0)
                    shot = cv2.warpAffine(shot, matrix, (cw, ch), borderMode=cv2.BORDER_REFLECT)
                shot = np.clip(shot.astype(np.float32) * gain, 0, 255).astype(np.uint8)
                rel = f"{portrait.stem}_{name}.jpg"
                write_image(out / rel, shot, jpeg_quality=92)
                manifest.write([Record(stage="example", source=str(portrait), origin=portrait.name,
                                       status="ok", output=rel, variant=name,
                                       params={"crop": crop, "gain": gain, "angle": angle})])


def run(command: list[str]) -> None:
    """Print a command the way a user would type it, then run it; stop the demo if it fails."""
    shown = " ".join(shlex.quote(part) for part in command)
    print(f"\n$ {shown}", flush=True)
    started = time.perf_counter()
    result = subprocess.run(command)
    if result.returncode not in (0,):
        sys.exit(f"demo step failed (exit {result.returncode}): {shown}")
    print(f"  ({time.perf_counter() - started:.1f} s)", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, help="a folder of your own unmasked photos (default: bundled example)")
    parser.add_argument("--out", type=Path, default=Path("demo_out"), help="where everything goes")
    parser.add_argument("--epochs", type=int, default=2)
    args = parser.parse_args()

    bin_dir = Path(sys.executable).parent
    maskprep = str(bin_dir / "maskprep") if (bin_dir / "maskprep").exists() else "maskprep"
    train = str(bin_dir / "maskprep-train") if (bin_dir / "maskprep-train").exists() else "maskprep-train"
    out = args.out
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    started = time.perf_counter()

    if args.data:
        photos = args.data
        if not list_images(photos):
            sys.exit(f"no images found under {photos}")
    else:
        photos = out / "photos"
        print(f"building the example photo collection in {photos} from two public-domain portraits")
        make_example_photos(photos)

    faces, masked, dataset = out / "faces", out / "masked", out / "dataset"
    augmented, run_dir = out / "augmented", out / "run"
    run([maskprep, "detect", str(photos), str(faces), "--size", "160"])
    run([maskprep, "synth-masks", str(faces), str(masked), "--types", "all", "--wear", "all",
         "--preview", str(out / "masks_preview.png"), "--save-alpha"])
    # Labels from what each stage recorded (crops: without_mask; correct: with_mask; nose-out and
    # chin: mask_worn_wrong); every copy of one portrait stays on one side. Two portraits make two
    # source photos, so half and half is the only honest split here (no test split: bring your own
    # photos with --data, or real ones with --test-from).
    run([maskprep, "dataset", str(faces), str(masked), str(dataset), "--ratios", "0.5,0.5"])
    run([maskprep, "augment", str(dataset), str(augmented), "--flip", "--blur", "--color-jitter"])
    # Findings are expected here (the shots of one portrait are near-duplicates of each other, and
    # the classes are imbalanced); the audit reports them and the demo goes on.
    run([maskprep, "audit", str(augmented), "--html", str(out / "audit.html"), "--json",
         str(out / "audit.json")])
    run([train, str(augmented), "--out", str(run_dir), "--epochs", str(args.epochs), "--img-size", "64",
         "--batch-size", "16", "--weights", "none", "--freeze", "none", "--arch", "resnet18"])
    run([train, "predict", str(run_dir / "best.pt"), str(photos), "--detect"])

    print(f"\ndemo finished in {time.perf_counter() - started:.0f} s. Look at:")
    for label, path in [
        ("face crops + manifest", faces),
        ("masked faces + manifest", masked),
        ("mask preview sheet", out / "masks_preview.png"),
        ("labelled dataset + split report", dataset),
        ("augmented dataset + manifest", augmented),
        ("audit report (open in a browser)", out / "audit.html"),
        ("audit findings (JSON)", out / "audit.json"),
        ("training metrics", run_dir / "metrics.json"),
        ("training plots", run_dir),
    ]:
        print(f"  {label:34s} {path}")


if __name__ == "__main__":
    main()
