"""The names of the reference baselines, defined once (no torch here: the CLI and the report
import it at start-up).

A reference submission is called ``ref-<variant>-s<seed>``; its ``submission.toml`` also
records ``reference = {variant, seed, profile}``, which is what the report reads (names are
never parsed back).
"""

from __future__ import annotations

# The training variants, in the order tables show them (benchmark.stunting implements them).
VARIANTS = ("unstunted", "myopic", "stunted-skip", "stunted-penalty", "stunted-balance", "stunted-sampled",
            "stunted-learned")
# The untrained model of the reference architecture: the floor every metric must beat.
RANDOM_INIT_VARIANT = "random-init"
RANDOM_INIT = "ref-random-init"


def reference_name(variant: str, seed: int) -> str:
    """The submission name of reference ``variant`` trained with ``seed``."""
    return f"ref-{variant}-s{seed}"
