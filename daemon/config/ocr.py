"""The OCR engine's sections: ocr (models, shapes, thresholds, the CPU's options), engines (where calibrated models
and TensorRT engines live) and gpu (streams, zero-copy, batching)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Optional

from daemon.config.errors import require
from daemon.config.files import check_readable


MAX_EXCLUDED_CHARS = 256
# Bounds past what any box runs: a config's numbers are not trusted to be sane. Without them threads: 100000
# started tens of thousands of ONNX Runtime threads and det_input_size [32000, 32000] asked for 11 GiB a frame
# (found from outside); each is refused naming its key instead.
MAX_SIDE = 4096          # det_input_size, rec_width (pixels)
MAX_DET_BATCH = 64       # det_batch, tiles_max
MAX_REC_BATCH = 256
MAX_REC_HEIGHT = 256
MAX_THREADS = 256        # ONNX Runtime intra-op threads per model
MAX_DET_CANDIDATES = 100_000


@dataclass(frozen=True)
class OcrConfig:
    # Which bundled models the null paths below mean; same pre- and post-processing for all three.
    # pp-ocrv6-small (default): PP-OCRv6 small's detector and recognizer with the v2.0 0/180 classifier, all
    # from the rapidocr==3.10.0 wheel (installed with --no-deps: its declared opencv-python-headless would
    # replace opencv-python's cv2). Its detector reads hard labels best and, on the CPU, runs from its shipped
    # INT8 copy (cpu_int8_det) at about v4's folded FP32 speed (docs/performance.md; bench/RESULTS.md section 25).
    # pp-ocrv4-det-v6-rec: v4 mobile's detector with v6 small's recognizer, the default before (a little faster
    # on 2 vCPUs, worse on hard labels). pp-ocrv4: all three from the rapidocr-onnxruntime==1.4.4 wheel,
    # RapidOCR 1.4.4's own models.
    model_set: Literal["pp-ocrv4", "pp-ocrv6-small", "pp-ocrv4-det-v6-rec"] = "pp-ocrv6-small"
    # Model files; null = the model_set's file. A path given here wins over the set.
    det_model: Optional[str] = None
    rec_model: Optional[str] = None
    cls_model: Optional[str] = None
    # Character dictionary, one per line; null = read from the recognizer's ONNX metadata.
    dictionary: Optional[str] = None
    # fp32 runs the ONNX above; int8 runs the Q/DQ models written by `ocr-daemon calibrate` into engines/.
    precision: Literal["fp32", "fp16", "int8"] = "fp32"
    # Fixed detector input [height, width]; frames are letterboxed into it (aspect kept, padded).
    # 960 wide keeps 1280x960 label text at 3/4 size (640 and 736 lose small text, see bench/RESULTS.md);
    # 736 high fits a 4:3 or 16:9 frame at that scale with no padded rows. Portrait cameras: swap them.
    det_input_size: tuple[int, int] = (736, 960)
    # Frames per detector call (engine batch); frames of several cameras share one call.
    det_batch: int = 1
    # Small text in frames much larger than det_input_size: the detector also reads the frame as overlapping
    # input-size tiles (at native size where tiles_max allows), boxes stitched across the seams, lines cut from
    # the full-resolution frame (daemon/ocr/tiles.py); a small frame (a small or portrait photo) is read as tiles
    # that enlarge it until its short side fills the input's. auto = with TensorRT every frame whose tiles show
    # text 1.5x larger than the letterbox (a batch of tiles costs little there); on the CPU, where each tile is a
    # detector run, only frames the letterbox shrinks to 40 % or less, 1920x1080 (its tiles at native size show it
    # twice as large) and small frames, not the 1280x960 and 2048x1536 labels; on = the TensorRT rule on any
    # backend; off = never. docs/configuration.md.
    tiles: Literal["auto", "on", "off"] = "auto"
    # Most tiles per frame (detector inputs besides the letterboxed frame); a frame that needs more at native
    # size is tiled at the largest scale that fits. 0 = automatic: fewer on the CPU than on a GPU.
    tiles_max: int = 0
    # DB post-processing: PaddleOCR's probability threshold and box score; the unclip ratio below
    # RapidOCR's 1.6, since with less margin above and below a line the recognizer reads the x of "2 x 1.49"
    # as the letter, not as the multiplication sign (bench/RESULTS.md section 43).
    det_threshold: float = 0.3
    det_box_threshold: float = 0.5
    det_unclip_ratio: float = 1.4
    det_min_size: int = 3
    det_max_candidates: int = 1000
    # Fixed recognizer input: 3 x rec_height x rec_width, in batches of rec_batch (last one padded).
    rec_height: int = 48
    rec_width: int = 320
    rec_batch: int = 8
    # The CPU's recognizer and classifier batch (ONNX Runtime takes any batch; rec_batch is the TensorRT
    # engines' shape). 0 = automatic: 4 on 1 or 2 threads, where 8 lines per call fall out of a core's
    # cache, rec_batch from 3 threads up (bench/RESULTS.md section 19).
    cpu_rec_batch: int = 0
    # A second fixed recognizer batch for an image's last few lines, so they do not pay for a whole
    # padded rec_batch call (a second engine on TensorRT); 0 = off. Must be smaller than rec_batch.
    rec_tail_batch: int = 2
    # Short line pieces share one 3 x 48 x 320 slot, side by side with half a line height of padding
    # between them, each decoded from its own output columns: fewer recognizer slots (bench/RESULTS.md
    # section 1), but the recognizer sees the whole slot, so a line can read otherwise beside another
    # (an O beside prices read as 0: section 43). Off: each line is read alone, as the same line in any frame.
    rec_packing: bool = False
    # Characters the recognizer never emits: where one is its best guess, its next best is read instead. The
    # default, the multiplication sign: PP-OCRv6 small often reads the letter x between numbers ("2 x 6.02") as
    # "×" (bench/RESULTS.md section 47). "" = every character of the dictionary (for text that prints the sign,
    # such as pack sizes "500ml×12").
    exclude_chars: str = "×"
    # 0/180 degree line classifier for labels that arrive upside down.
    use_angle_classifier: bool = True
    cls_threshold: float = 0.9
    # Lines below this recognition confidence are dropped by the pipeline itself.
    drop_score: float = 0.5
    # ONNX Runtime intra-op threads per model; 0 = one per physical core (SMT siblings counted once).
    threads: int = 0
    # CPU backend: frames in the pipeline at once. 2 = the detector of frame N+1 runs on its own thread
    # while frame N is recognized; 0 = automatic (2 from 4 physical cores up, bench/RESULTS.md section 17).
    frames_in_flight: int = 0
    # CPU backend, FP32: run each model from a copy with its scalar affines folded into the convolutions
    # and its hard-swishes in one piece (exact up to float rounding, and faster: bench/RESULTS.md section 24,
    # daemon/backends/onnxruntime/fold.py), written once. false = the files as shipped.
    cpu_fold: bool = True
    # Where those copies go; null = the system's cache: $CACHE_DIRECTORY under systemd (the unit's
    # /var/cache/ocr-daemon), else $XDG_CACHE_HOME or ~/.cache/ocr-daemon, else engines.dir/cpu.
    cpu_fold_dir: Optional[str] = None
    # CPU, FP32: run the detector from its shipped INT8 copy where daemon/models/ has one for that exact file
    # (PP-OCRv6 small's: u8 x s8 integer kernels, several times its FP32 speed with a lower CER on hard labels;
    # daemon/quantize/cpu_int8.py, bench/RESULTS.md section 25). false = the detector in FP32.
    cpu_int8_det: bool = True

    def check(self, key: str) -> None:
        for name in ("det_model", "rec_model", "cls_model", "dictionary"):
            check_readable(f"{key}.{name}", getattr(self, name))
        for i, v in enumerate(self.det_input_size):
            require(32 <= v <= MAX_SIDE and v % 32 == 0, f"{key}.det_input_size[{i}]", v,
                    f"must be a multiple of 32 from 32 to {MAX_SIDE}")
        require(1 <= self.det_batch <= MAX_DET_BATCH, f"{key}.det_batch", self.det_batch,
                f"must be 1 to {MAX_DET_BATCH}")
        require(0 <= self.tiles_max <= MAX_DET_BATCH, f"{key}.tiles_max", self.tiles_max,
                f"must be 0 (automatic) to {MAX_DET_BATCH}")
        require(1 <= self.rec_batch <= MAX_REC_BATCH, f"{key}.rec_batch", self.rec_batch,
                f"must be 1 to {MAX_REC_BATCH}")
        require(self.rec_tail_batch == 0 or 1 <= self.rec_tail_batch < self.rec_batch, f"{key}.rec_tail_batch",
                self.rec_tail_batch, f"must be 0 (off) or between 1 and ocr.rec_batch - 1 ({self.rec_batch - 1})")
        require(self.cpu_rec_batch == 0 or self.cpu_rec_batch > self.rec_tail_batch, f"{key}.cpu_rec_batch",
                self.cpu_rec_batch, f"must be 0 (automatic) or more than ocr.rec_tail_batch ({self.rec_tail_batch})")
        require(8 <= self.rec_height <= MAX_REC_HEIGHT, f"{key}.rec_height", self.rec_height,
                f"must be 8 to {MAX_REC_HEIGHT}")
        require(self.rec_height <= self.rec_width <= MAX_SIDE, f"{key}.rec_width", self.rec_width,
                f"must be from rec_height to {MAX_SIDE}")
        for name in ("det_threshold", "det_box_threshold", "cls_threshold", "drop_score"):
            v = getattr(self, name)
            require(0.0 <= v <= 1.0, f"{key}.{name}", v, "must be between 0 and 1")
        require(len(self.exclude_chars) <= MAX_EXCLUDED_CHARS and not any(c.isspace() for c in self.exclude_chars),
                f"{key}.exclude_chars", self.exclude_chars,
                f"must be at most {MAX_EXCLUDED_CHARS} characters, none of them whitespace")
        require(self.det_unclip_ratio > 0, f"{key}.det_unclip_ratio", self.det_unclip_ratio, "must be positive")
        require(self.det_min_size >= 1, f"{key}.det_min_size", self.det_min_size, "must be at least 1")
        require(1 <= self.det_max_candidates <= MAX_DET_CANDIDATES, f"{key}.det_max_candidates",
                self.det_max_candidates, f"must be 1 to {MAX_DET_CANDIDATES}")
        require(0 <= self.threads <= MAX_THREADS, f"{key}.threads", self.threads,
                f"must be 0 (automatic) to {MAX_THREADS}")
        require(self.frames_in_flight in (0, 1, 2), f"{key}.frames_in_flight", self.frames_in_flight,
                "must be 0 (automatic), 1 or 2")


@dataclass(frozen=True)
class EnginesConfig:
    # Where calibrated Q/DQ models, TensorRT engines and their JSON sidecars live.
    dir: str = "engines"
    # TensorRT builder memory pool (workspace) limit.
    workspace_mib: int = 1024
    # Per-GPU timing cache, reused between builds to cut build time on a Jetson.
    timing_cache: Optional[str] = "engines/timing.cache"
    # Keep these ONNX node names in float when quantizing (layers that lose accuracy in INT8).
    int8_exclude_nodes: tuple[str, ...] = ()

    def check(self, key: str) -> None:
        require(self.workspace_mib >= 64, f"{key}.workspace_mib", self.workspace_mib, "must be at least 64")


@dataclass(frozen=True)
class GpuConfig:
    # Buffer sets and CUDA streams: 2 lets frame N+1's upload and preprocess overlap frame N's inference.
    streams: int = 2
    # Frames via mapped pinned memory instead of an upload; auto = only on integrated GPUs (Jetson).
    zero_copy: Literal["auto", "on", "off"] = "auto"
    # Longest wait for frames of other cameras to fill a detector batch.
    batch_wait_ms: float = 5.0

    def check(self, key: str) -> None:
        require(self.streams in (1, 2, 3), f"{key}.streams", self.streams, "must be 1, 2 or 3")
        require(self.batch_wait_ms >= 0, f"{key}.batch_wait_ms", self.batch_wait_ms, "must not be negative")
