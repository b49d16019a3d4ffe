"""Write examples/iris/golden.jsonl: the iris golden set, generated deterministically.

Flowers are drawn (seeded) from per-species normal distributions with the means and standard
deviations of Fisher's data, rounded to 0.1 cm like the original measurements, and kept only when
the model's own class regions (`model.classify`) put them in the species they were drawn for:
24 setosa, 48 versicolor and 48 virginica (a golden set probes where models differ, and setosa is
easy). They are shuffled and sent in batches of 15 (`{"instances": [...]}`), so the
whole set is 8 requests: few enough that iris `v5` still serves them from its healthy warm-up.

Run `python -m examples.iris.make_golden` from the repository root to rewrite the file;
tests/unit/test_iris_model.py checks that the file is what this script writes.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

from examples.iris.model import SPECIES, Measurements, classify

GOLDEN_FILE = Path(__file__).with_name("golden.jsonl")
PER_SPECIES = {"setosa": 24, "versicolor": 48, "virginica": 48}
BATCH = 15
SEED = 1936  # the year of Fisher's paper

# (mean, standard deviation) of sepal length, sepal width, petal length, petal width in cm.
_FISHER = {
    "setosa": ((5.006, 0.352), (3.428, 0.379), (1.462, 0.174), (0.246, 0.105)),
    "versicolor": ((5.936, 0.516), (2.770, 0.314), (4.260, 0.470), (1.326, 0.198)),
    "virginica": ((6.588, 0.636), (2.974, 0.322), (5.552, 0.552), (2.026, 0.275)),
}


def flowers(seed: int = SEED) -> list[tuple[Measurements, str]]:
    """PER_SPECIES flowers of each species, each inside its species' class region, shuffled."""
    rng = random.Random(seed)
    chosen: list[tuple[Measurements, str]] = []
    for species in SPECIES:
        kept = 0
        while kept < PER_SPECIES[species]:
            a, b, c, d = (max(0.1, round(rng.gauss(mu, sd), 1)) for mu, sd in _FISHER[species])
            if classify((a, b, c, d)) == species:
                chosen.append(((a, b, c, d), species))
                kept += 1
    rng.shuffle(chosen)
    return chosen


def lines(seed: int = SEED) -> list[str]:
    """The JSONL lines: one named batch request per BATCH flowers."""
    drawn = [list(m) for m, _ in flowers(seed)]
    return [
        json.dumps(
            {
                "name": f"batch-{number:02d}",
                "path": "/predict",
                "json": {"instances": drawn[start : start + BATCH]},
            }
        )
        for number, start in enumerate(range(0, len(drawn), BATCH), 1)
    ]


def main() -> None:
    """Rewrite the golden file."""
    GOLDEN_FILE.write_text("\n".join(lines()) + "\n", encoding="utf-8")
    print(f"wrote {GOLDEN_FILE} ({len(lines())} requests, {sum(PER_SPECIES.values())} flowers)")


if __name__ == "__main__":
    main()
