#!/usr/bin/env python3
"""Generate a synthetic JSONL export shaped like real citizen-science data, for benchmarking
`distrainer split` (not used by the tests).

Deterministic for a given (--lines, --seed). Each line:
  {"id", "image_url", "latin_name", "observation", "region", "license", "lat", "lon", "source"}
with
  - heavy URL duplication: about half the records re-use an earlier record's URL (the same
    photo exported twice), a few of them under another species (label conflicts);
  - a long tail of classes: Zipf-like class sizes, many classes with a handful of images;
  - observations of 1-4 photos sharing an "observation" id (a group key);
  - region and license fields (some non-commercial licences, a few records without one);
  - two bad lines (one not JSON, one without a label).

    python3 tools/gen_manifest.py --lines 1000000 --out /tmp/raw.jsonl
"""
import argparse
import json
import random

REGIONS = ["EU_SW", "EU_NE", "EU_C", "NA_E", "NA_W", "AS_E", "AF_S", "OC"]
LICENSES = ["CC0", "CC-BY", "CC-BY-SA", "CC-BY-NC", "CC-BY-NC-SA", "CC-BY 4.0", "public domain", "all rights reserved"]
SOURCES = ["inat", "gbif", "flickr", "herbarium"]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--lines", type=int, default=1_000_000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--classes", type=int, default=0, help="number of classes (default: lines // 48)")
    ap.add_argument("--out", required=True)
    args = ap.parse_args()

    rng = random.Random(args.seed)
    n = args.lines
    k = args.classes or max(20, n // 48)
    names = [f"Genus{c // 7:05d} species{c:06d}" for c in range(k)]
    # Zipf-like class weights: a few big classes, a long tail of tiny ones.
    weights = [1.0 / (c + 1) ** 1.1 for c in range(k)]
    cum = []
    total = 0.0
    for w in weights:
        total += w
        cum.append(total)

    def pick_class():
        x = rng.random() * total
        lo, hi = 0, k - 1
        while lo < hi:
            mid = (lo + hi) // 2
            if cum[mid] < x:
                lo = mid + 1
            else:
                hi = mid
        return lo

    bad_at = sorted({n // 3, (2 * n) // 3})
    earlier = []  # (url, class, observation) of earlier new photos
    obs = 0
    obs_left = 0
    obs_class = 0
    with open(args.out, "w", encoding="utf-8") as f:
        for i in range(n):
            if i == bad_at[0]:
                f.write('{"id": "bad-%d", "image_url": "https://img.example.org/x.jpg", "latin_name": \n' % i)
                continue
            if i == bad_at[-1]:
                f.write('{"id": "bad-%d", "image_url": "https://img.example.org/y.jpg"}\n' % i)
                continue
            if earlier and rng.random() < 0.5:
                # The same photo exported again: usually the same observation and species,
                # sometimes filed under another observation, rarely under another species.
                url, cls, obs_id = earlier[rng.randrange(len(earlier))]
                if rng.random() < 0.02:
                    obs_id = "obs%07d" % rng.randrange(1, obs + 1)
                if rng.random() < 0.003:
                    cls = pick_class()
            else:
                if obs_left == 0:
                    obs += 1
                    obs_left = rng.choice((1, 1, 1, 2, 2, 3, 4))
                    obs_class = pick_class()
                obs_left -= 1
                cls = obs_class
                obs_id = "obs%07d" % obs
                url = "https://img.example.org/photos/%d/%08d/original.jpg" % (rng.randrange(1000), i)
                earlier.append((url, cls, obs_id))
            rec = {
                "id": "r%08d" % i,
                "image_url": url,
                "latin_name": names[cls],
                "observation": obs_id,
                "region": rng.choice(REGIONS),
                "license": rng.choice(LICENSES) if rng.random() < 0.98 else None,
                "lat": round(rng.uniform(-60, 70), 5),
                "lon": round(rng.uniform(-170, 170), 5),
                "source": rng.choice(SOURCES),
            }
            if rec["license"] is None:
                del rec["license"]
            f.write(json.dumps(rec, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main()
