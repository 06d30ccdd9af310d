"""benchmarks/gpu_check.py at tiny sizes on the CPU: every check runs and reports sane figures (the CUDA
run at full size is the same code)."""

from __future__ import annotations

import math
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"


def test_gpu_check_tiny_on_cpu(tmp_path):
    sys.path.insert(0, str(BENCH))
    try:
        import gpu_check
    finally:
        sys.path.remove(str(BENCH))
    out = gpu_check.main(["--tiny", "--device", "cpu", "--out", str(tmp_path / "g.json")])
    assert (tmp_path / "g.json").is_file() and out["device"] == "cpu"
    assert out["kmeans"]["seconds"] > 0 and 0 < out["kmeans"]["share"] and out["kmeans"]["non_empty"] > 1
    assert out["draw"]["ms"] > 0 and out["draw"]["coverage"] > 0.5
    for key in ("simclr_fp32", "simclr_bf16", "dino_fp32", "dino_bf16"):
        assert out[key]["utt_per_s"] > 0 and math.isnan(out[key]["peak_mib"])  # no CUDA memory on a CPU
    q = out["queues_mib"]
    assert q["dino_logits_2x65536"] - q["dino_2x256"] > 5000 and q["simclr_512"] > 1000  # 25k x 2 x 65,536
