"""The training monitor's cost: a full-profile reference trained with and without it, side
by side, as a ratio of wall time (and the weights compared: they must be the same).

    python bench/bench_monitor.py [--task rhymes] [--variant unstunted] [--repeats 1]
                                  [--points N] [--probe-examples N] [--gain-examples N]

One torch thread and one BLAS thread, as a training worker has (`benchmark.parallel`).
Runs alternate (off, on, off, on, ...) so a change in machine load hits both alike; the
ratio is total "on" time over total "off" time, data generation and saving included.
"""

import argparse
import json
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--task", default="rhymes")
    parser.add_argument("--variant", default="unstunted")
    parser.add_argument("--profile", default="full")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--points", type=int, default=None)
    parser.add_argument("--probe-examples", type=int, default=None)
    parser.add_argument("--gain-examples", type=int, default=None)
    args = parser.parse_args()

    import torch
    from threadpoolctl import threadpool_limits

    from benchmark.baselines import monitor_config, reference_config
    from benchmark.results import model_hash
    from benchmark.train import train_reference

    torch.set_num_threads(1)
    threadpool_limits(1)
    cfg = reference_config(args.profile, args.task, args.variant, 0)
    overrides = {k: v for k, v in (("points", args.points), ("probe_examples", args.probe_examples),
                                   ("gain_examples", args.gain_examples)) if v is not None}
    monitor = replace(monitor_config(args.profile, args.task), **overrides)
    seconds = {"off": 0.0, "on": 0.0}
    hashes, monitor_seconds, points = {}, 0.0, 0
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.repeats):
            for label in ("off", "on"):
                out = Path(tmp) / f"{label}-{r}"
                start = time.time()
                train_reference(cfg, out, monitor=monitor if label == "on" else None)
                seconds[label] += time.time() - start
                hashes[label] = model_hash(out)
                if label == "on":
                    log = json.loads((out / "train_log.json").read_text())["monitor"]
                    monitor_seconds += log["seconds"]
                    points = len(log["points"])
    n = args.repeats
    print(f"{args.task} {args.variant} ({args.profile}), {monitor}: {points} points")
    print(f"off {seconds['off'] / n:.1f} s  on {seconds['on'] / n:.1f} s  ratio {seconds['on'] / seconds['off']:.3f}"
          f"  (the monitor's own points: {monitor_seconds / n:.1f} s)")
    print("weights identical:", hashes["off"] == hashes["on"])


if __name__ == "__main__":
    main()
