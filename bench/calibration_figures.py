"""The myopic-training calibration table: 3 seeds x {shift 1, shift 0} x {vanilla, myopic},
plus the broken-on-purpose control (myopic with beta = 1, ordinary gradients), and the
done criteria of `benchmark.calibration.expectations`.

    /work/main/.venv/bin/python bench/calibration_figures.py [--full] [--seeds 0 1 2] [--json out.json]

One torch thread and one model at a time (the machine is shared). Exits 1 if a criterion
fails or if the control passes the myopic checks (then the check could not fail).
"""

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmark.calibration import expectations, run_calibration  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--full", action="store_true", help="the full setting (default: quick)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--no-control", action="store_true", help="skip the beta = 1 runs")
    parser.add_argument("--json", type=Path, help="also write every result here")
    args = parser.parse_args()
    torch.set_num_threads(1)

    plan = [(shift, variant, 0.0) for shift in (1, 0) for variant in ("vanilla", "myopic")]
    if not args.no_control:
        plan.append((1, "myopic", 1.0))
    results, start = [], time.perf_counter()
    print(f"{'shift':>5} {'variant':<8} {'beta':>4} {'seed':>4} {'loss':>7} {'zero':>6} {'own':>6} "
          f"{'ratio':>6} {'R2 by layer':<22} {'best':>5} {'R2 init':<22} {'sec':>5} {'cpu':>5}")
    for shift, variant, beta in plan:
        for seed in args.seeds:
            r = run_calibration(shift, variant, seed, beta=beta, quick=not args.full)
            results.append(r)
            layers = " ".join(f"{x:+.2f}" for x in r["probe_r2"])
            init = " ".join(f"{x:+.2f}" for x in r["probe_r2_init"])
            print(f"{shift:>5} {variant:<8} {beta:>4.1f} {seed:>4} {r['loss']:>7.3f} {r['zero_loss']:>6.3f} "
                  f"{r['own_position_loss']:>6.3f} {r['loss'] / r['zero_loss']:>6.3f} {layers:<22} "
                  f"{r['probe_r2_best']:>5.2f} {init:<22} {r['seconds']:>5.1f} {r['cpu_seconds']:>5.1f}", flush=True)
    total = time.perf_counter() - start
    main_runs = [r for r in results if r["beta"] == 0.0]
    print(f"\n{len(results)} models in {total:.0f} s wall ({sum(r['seconds'] for r in main_runs):.0f} s wall, "
          f"{sum(r['cpu_seconds'] for r in main_runs):.0f} s CPU for the {len(main_runs)} main ones); ratio = loss / zero-prediction loss; own = the loss of the best "
          f"predictor from position t alone\n")

    failed = False
    for name, ok, detail in expectations(results):
        failed |= not ok
        print(f"  {'PASS' if ok else 'FAIL'}  {name}: {detail}")
    if not args.no_control:
        print("  control (beta = 1 judged as the myopic model; these must FAIL):")
        for name, ok, detail in expectations(results, myopic_beta=1.0):
            if name.startswith("shift 1") and "vanilla probe" not in name:
                failed |= ok
                print(f"  {'fails, as it must' if not ok else 'PASSES: the check cannot fail'}  {name}: {detail}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
