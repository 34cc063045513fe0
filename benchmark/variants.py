"""The names of the reference baselines, defined once (no torch here: the CLI and the report
import it at start-up).

A reference submission is called ``ref-<variant>-s<seed>``; its ``submission.toml`` also
records ``reference = {variant, seed, profile}``, which is what the report reads (names are
never parsed back).
"""

from __future__ import annotations

# The training variants, in the order tables show them (benchmark.stunting implements them,
# the masked one benchmark.masked: bidirectional, trained to fill masked words).
MASKED = "masked"
VARIANTS = ("unstunted", "myopic", "stunted-skip", "stunted-penalty", "stunted-balance", "stunted-sampled",
            "stunted-learned", MASKED)
# A variant whose training rule changed since its first version: the version goes into its
# training config (`benchmark.train.TrainConfig.to_dict`), so models trained by the old rule
# are retrained, and the others keep their cache. myopic 2: earlier keys and values come from
# detached states through live projections (Wu et al.'s code), no longer detached themselves.
LOSS_VERSIONS = {"myopic": 2}
# The untrained model of the reference architecture: the floor every metric must beat.
RANDOM_INIT_VARIANT = "random-init"
RANDOM_INIT = "ref-random-init"


def reference_name(variant: str, seed: int) -> str:
    """The submission name of reference ``variant`` trained with ``seed``."""
    return f"ref-{variant}-s{seed}"
