"""Time `ssps data synth` for a preset and measure the channel effect on the result.

    .venv/bin/python benchmarks/bench_synth.py --preset default --out data/default

Prints one JSON object: wall seconds, CPU seconds of this process and its workers (the machine is
shared, so CPU time is the figure that does not depend on what else runs), corpus counts, the sibling
separability and the `ssps data stats` figures. An existing corpus folder is resumed, not remade: use a
fresh --out to time a full generation.
"""

from __future__ import annotations

import argparse
import json
import resource
import time

import torch

from ssps.corpus.stats import corpus_stats
from ssps.corpus.synth import synth_corpus


def cpu_seconds() -> float:
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def main() -> None:
    torch.set_num_threads(1)
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--preset", default="default")
    parser.add_argument("--channels", default="mild")
    parser.add_argument("--out", required=True)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    wall, cpu = time.perf_counter(), cpu_seconds()
    s = synth_corpus(args.out, args.preset, args.channels, args.seed, args.workers, progress=False)
    wall, cpu = time.perf_counter() - wall, cpu_seconds() - cpu
    kept = [r for r in s["siblings"] if r["kept"]]
    result = {
        "preset": args.preset, "channels": args.channels, "workers": args.workers,
        "synth_wall_s": round(wall, 1), "synth_cpu_s": round(cpu, 1), "files_written": s["files_written"],
        "speakers": s["speakers"], "utterances": s["utterances"], "hours": s["hours"],
        "voices_used": len(s["voices_used"]), "voices_dropped": [d["database"] for d in s["voices_dropped"]],
        "sibling_candidates": len(s["siblings"]), "siblings_kept": len(kept),
        "sibling_eer_median": _median([r["eer"] for r in s["siblings"]]),
        "real_voice_pair_eer_median": _median([r["reference_eer"] for r in s["siblings"]]),
        "trials": s["trials"], "stats": corpus_stats(args.out),
    }  # fmt: skip
    print(json.dumps(result, indent=2))


def _median(values: list[float]) -> float | None:
    return round(sorted(values)[len(values) // 2], 4) if values else None


if __name__ == "__main__":
    main()
