"""The frame sets of bench/RESULTS-int8.md: rendered ordinary and hard labels, and the real photographs.

    python bench/int8_sets.py OUT_DIR

writes OUT_DIR/calib/ (60 ordinary + 30 hard rendered labels, seeds 1000.. and 2000..) and OUT_DIR/test/
with ordinary/ (40, seeds 5000..), hard/ (42, seeds 6000..) and photos/ (a copy of bench/photos), each with
labels.jsonl whose "kind" is the variant. Frames are stored as JPEG quality 80, as cameras deliver them
(and so the sets fit the 64 MiB that travels to the GPU machine); the measurements are of these files.
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path

import cv2

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from daemon.samples.render import HARD_VARIANTS, LABELS_FILE, VARIANTS, make_dataset  # noqa: E402

ORDINARY = ("plain", "rotated", "upside_down", "perspective", "large", "blurred", "low_contrast")
assert set(ORDINARY) == set(VARIANTS)
SETS = {  # folder: (number of labels, first seed, variants in turn)
    "calib/ordinary": (60, 1000, ORDINARY),
    "calib/hard": (30, 2000, HARD_VARIANTS),
    "test/ordinary": (40, 5000, ORDINARY),
    "test/hard": (42, 6000, HARD_VARIANTS),
}
JPEG_QUALITY = 80


def to_jpeg(src: Path, dst: Path, quality: int = JPEG_QUALITY) -> None:
    dst.mkdir(parents=True, exist_ok=True)
    records = []
    for raw in (src / LABELS_FILE).read_text(encoding="utf-8").splitlines():
        rec = json.loads(raw)
        name = Path(rec["image"]).with_suffix(".jpg").name
        if not cv2.imwrite(str(dst / name), cv2.imread(str(src / rec["image"])), [cv2.IMWRITE_JPEG_QUALITY, quality]):
            raise OSError(f"cannot write {dst / name}")
        records.append(json.dumps({**rec, "image": name}, ensure_ascii=False))
    (dst / LABELS_FILE).write_text("\n".join(records) + "\n", encoding="utf-8")


def write_sets(out: Path, sets: dict[str, tuple[int, int, tuple[str, ...]]], quality: int = JPEG_QUALITY) -> None:
    """Renders each folder's labels (number, first seed, variants in turn) and stores them as JPEG."""
    for folder, (n, seed, variants) in sets.items():
        with tempfile.TemporaryDirectory() as tmp:
            make_dataset(tmp, n, seed, variants)
            to_jpeg(Path(tmp), out / folder, quality)
        print(f"{out / folder}: {n} labels")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out_dir", type=Path, help="where calib/ and test/ are written")
    out = ap.parse_args().out_dir
    write_sets(out, SETS)
    shutil.copytree(Path(__file__).resolve().parent / "photos", out / "test" / "photos", dirs_exist_ok=True)
    print(f"{out / 'test' / 'photos'}: the real photographs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
