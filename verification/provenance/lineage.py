"""Sibling bases: which of two related bases a model was fine-tuned from.

Two bases are siblings when one was continued-pretrained from the other (Llama 3.1 from Llama 3):
both pass the "derived" test of distance.py for any fine-tune of either, and a fine-tune whose
update is as large as the siblings' own gap sits at distance ratios near 1/√2 from the one it
does not come from, so the "clearly nearer" ratio rule cannot tell them apart. The geometry can.

Per weight matrix, with X the claimed base, Y the other sibling and W the submitted weights, the
position of W along the segment from Y to X is

    t = (‖W − W_Y‖² − ‖W − W_X‖² + ‖W_X − W_Y‖²) / (2 ‖W_X − W_Y‖²)

(0 at Y, 1 at X; from the three pairwise distances, so nothing beyond one extra pass over X and Y
is read). A fine-tune of Y has t ≈ 0 whatever the size of its update, an honest fine-tune of X has
t ≈ 1: the update Δ moves t only by its component along X − Y, ⟨Δ, X − Y⟩ / ‖X − Y‖². Per matrix,
t < 1/2 is exactly "nearer Y than X".

The decision *(thresholds ours)*: Y is clearly nearer than the claimed X when
- t < 1/2 in at least 90% of the matrices (distance.CONSISTENCY_FRACTION), and the median t is at
  most MAX_SIBLING_POSITION = 0.4;
- the noise scale of t is small: an update in a direction unrelated to X − Y moves t by about
  h / (‖X − Y‖ √n) for an update of size h off the segment and n elements; its median over the
  matrices must stay below MAX_POSITION_NOISE = 0.02, so the margin 0.5 − 0.4 is five noise scales;
- the update from Y is smaller than the siblings' own gap (median ‖W − W_Y‖ / ‖W_X − W_Y‖ < 1).
  Fine-tuning moves weights the way further pretraining on similar text does: on the tiny zoo a
  fine-tune of the older sibling drifts about 0.3 of the gap toward the newer one per update of
  0.7 gaps, and one whose update exceeds the gap sits past the midpoint (0.69), where no distance
  can tell it from a fine-tune of the newer sibling. Such a model is left undecided (no flag),
  and it is the honest side of that case that matters: a long fine-tune of the older base that
  honestly claims it must not be called a fine-tune of the newer one.
Honest fine-tunes of the claimed (newer) base sit at t ≥ 1 minus whatever backward drift their
update has along X − Y; the zoo's measured positions, false-positive and detection rates are in
verification/METHODS_VERDICTS.md (performance/zoo_provenance_rates.py). When the siblings are
practically the same weights (a re-upload, a rounding) the noise scale is large and nothing is
decided.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass

from verification.provenance.distance import CandidateDistances, comparable_rows, compare_tensor
from verification.provenance.weights import WeightIndex

MAX_SIBLING_POSITION = 0.4
MAX_POSITION_NOISE = 0.02
MAX_UPDATE_TO_GAP = 1.0
NEARER_POSITION = 0.5


@dataclass
class SiblingComparison:
    """Where the submitted weights sit between the claimed base and a derived challenger."""

    challenger: str
    claimed: str
    positions: dict[str, float]  # tensor -> t (0 at the challenger, 1 at the claimed base)
    noise: dict[str, float]  # tensor -> noise scale of t for an unrelated update
    update_to_gap: dict[str, float]  # tensor -> ‖W − W_challenger‖ / ‖W_claimed − W_challenger‖
    gap: float | None  # median relative distance between the two bases

    def median_position(self) -> float | None:
        return statistics.median(self.positions.values()) if self.positions else None

    def median_noise(self) -> float | None:
        return statistics.median(self.noise.values()) if self.noise else None

    def median_update_to_gap(self) -> float | None:
        return statistics.median(self.update_to_gap.values()) if self.update_to_gap else None

    def nearer_challenger(self) -> int:
        return sum(1 for t in self.positions.values() if t < NEARER_POSITION)

    def clearly_nearer(self, consistency: float) -> bool:
        position, noise, update = self.median_position(), self.median_noise(), self.median_update_to_gap()
        if position is None or noise is None or update is None or not self.positions:
            return False
        return (
            self.nearer_challenger() / len(self.positions) >= consistency
            and position <= MAX_SIBLING_POSITION
            and noise <= MAX_POSITION_NOISE
            and update < MAX_UPDATE_TO_GAP
        )

    def as_dict(self) -> dict:
        def rounded(value: float | None) -> float | None:
            return None if value is None or not math.isfinite(value) else round(value, 5)

        return {
            "challenger": self.challenger,
            "claimed": self.claimed,
            "median_position": rounded(self.median_position()),
            "median_noise": rounded(self.median_noise()),
            "median_update_to_gap": rounded(self.median_update_to_gap()),
            "nearer_challenger_in": self.nearer_challenger(),
            "of": len(self.positions),
            "sibling_gap_median_relative_distance": rounded(self.gap),
            "thresholds": {
                "max_median_position": MAX_SIBLING_POSITION,
                "max_position_noise": MAX_POSITION_NOISE,
                "max_update_to_gap": MAX_UPDATE_TO_GAP,
            },
        }


def compare_siblings(
    sub: WeightIndex,
    claimed_index: WeightIndex,
    challenger_index: WeightIndex,
    to_claimed: CandidateDistances,
    to_challenger: CandidateDistances,
    names: list[str],
) -> SiblingComparison:
    """Positions t of the submitted weights between `challenger` (0) and `claimed` (1), per
    weight matrix both were compared on (one streamed pass over the two bases)."""
    positions: dict[str, float] = {}
    noise: dict[str, float] = {}
    update_to_gap: dict[str, float] = {}
    gaps: list[float] = []
    for name in names:
        near_x, near_y = to_claimed.per_tensor.get(name), to_challenger.per_tensor.get(name)
        rows = comparable_rows(claimed_index, challenger_index, name) if name in claimed_index else None
        if near_x is None or near_y is None or rows is None:
            continue
        between = compare_tensor(claimed_index, challenger_index, name, rows)
        gap = between.distance
        if not math.isfinite(gap) or gap <= 0.0:
            continue  # identical bases: no position to speak of
        gaps.append(between.relative_distance)
        d_x, d_y = near_x.distance, near_y.distance
        t = (d_y**2 - d_x**2 + gap**2) / (2 * gap**2)
        off_line = math.sqrt(max(d_y**2 - (t * gap) ** 2, 0.0))
        positions[name] = t
        noise[name] = off_line / (gap * math.sqrt(max(sub.tensors[name].numel, 1)))
        update_to_gap[name] = d_y / gap
    return SiblingComparison(
        to_challenger.name,
        to_claimed.name,
        positions,
        noise,
        update_to_gap,
        statistics.median(gaps) if gaps else None,
    )
