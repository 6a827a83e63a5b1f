"""Generate houses.csv: a small synthetic regression data set (fixed seed, standard library only).

price (in 100k) depends on floor area, rooms, age and distance to the centre, with one non-linear term
and Gaussian noise. The output is committed; rerunning this script reproduces it byte for byte.

Usage: python make_data.py [OUT.csv] [--rows N]
"""

from __future__ import annotations

import argparse
import csv
import random
from pathlib import Path

SEED = 20261123
COLUMNS = ["area_m2", "rooms", "age_years", "distance_km", "price"]


def price(area: float, rooms: int, age: float, distance: float, rng: random.Random) -> float:
    value = (0.5 + 0.02 * area + 0.25 * rooms - 0.012 * age
             + 1.5 / (1.0 + 0.3 * distance)           # non-linear: the centre premium fades with distance
             + rng.gauss(0.0, 0.1))
    return max(value, 0.1)


def rows(n: int, seed: int = SEED) -> list[list[str]]:
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        area = rng.uniform(30, 200)
        rooms = max(1, min(7, round(area / 30 + rng.gauss(0, 0.7))))
        age = rng.uniform(0, 80)
        distance = rng.uniform(0.2, 30)
        y = price(area, rooms, age, distance, rng)
        out.append([f"{area:.1f}", str(rooms), f"{age:.1f}", f"{distance:.2f}", f"{y:.3f}"])
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", nargs="?", default=str(Path(__file__).with_name("houses.csv")))
    parser.add_argument("--rows", type=int, default=500)
    args = parser.parse_args()
    with open(args.out, "w", newline="") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(COLUMNS)
        writer.writerows(rows(args.rows))


if __name__ == "__main__":
    main()
