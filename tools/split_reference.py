#!/usr/bin/env python3
"""A plain-Python (json + random) version of `distrainer split`'s core, for speed and memory
comparison only (not a reference for correctness; the Swift tests check that on their own).

Same steps: skip bad lines (not JSON, missing/empty/non-string image, missing/empty label),
dedup by image reference (keep the first; label conflicts keep the first), union-find over image
references and group keys, stratify each class's components by largest remainder (classes
with fewer components than splits go to train, then val, then test), write the original lines
to OUT/train.jsonl, val.jsonl, test.jsonl. It does not validate URLs, lat/lon or ids, rewrite
relative paths, apply filters, re-check the outputs or compute fingerprints and class weights.

    python3 tools/split_reference.py --input raw.jsonl --out DIR --ratios 0.8,0.1,0.1 --seed 1 \\
        --image-field image_url --label-field latin_name [--group-field observation]
"""
import argparse
import json
import os
import random


def find(parent, x):
    while parent[x] != x:
        parent[x] = parent[parent[x]]
        x = parent[x]
    return x


def union(parent, a, b):
    ra, rb = find(parent, a), find(parent, b)
    if ra != rb:
        parent[rb] = ra


def apportion(n, ratios, rng):
    quotas = [n * r for r in ratios]
    counts = [int(q) for q in quotas]
    order = list(range(len(ratios)))
    rng.shuffle(order)
    order.sort(key=lambda s: -(quotas[s] - counts[s]))
    for s in order[: n - sum(counts)]:
        counts[s] += 1
    return counts


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--input", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--ratios", default="0.8,0.1,0.1")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--image-field", default="image")
    ap.add_argument("--label-field", default="label")
    ap.add_argument("--group-field")
    args = ap.parse_args()
    ratios = [float(x) for x in args.ratios.split(",")]
    names = ["train", "val", "test"][: len(ratios)]

    lines, images, labels, groups = [], [], [], []
    rejected = {}
    with open(args.input, encoding="utf-8") as f:
        for number, text in enumerate(f, 1):
            text = text.rstrip("\n")
            if not text.strip():
                continue
            try:
                rec = json.loads(text)
            except ValueError:
                rejected["not JSON"] = rejected.get("not JSON", 0) + 1
                continue
            image, label = rec.get(args.image_field) if isinstance(rec, dict) else None, None
            if isinstance(rec, dict):
                label = rec.get(args.label_field)
            if not isinstance(image, str) or not image or label is None or label == "":
                rejected["bad field"] = rejected.get("bad field", 0) + 1
                continue
            lines.append(number)
            images.append(image)
            labels.append(str(label))
            groups.append(rec.get(args.group_field) if args.group_field else None)

    n = len(lines)
    parent = list(range(n))
    first_of_image = {}
    for i, image in enumerate(images):
        j = first_of_image.setdefault(image, i)
        if j != i:
            union(parent, j, i)
    # Keep the first record of each image (label conflicts: keep-first).
    kept = [first_of_image[images[i]] == i for i in range(n)]
    first_of_group = {}
    for i, g in enumerate(groups):
        if g is not None:
            j = first_of_group.setdefault(g, i)
            if j != i:
                union(parent, j, i)

    comp_of_root, comp_size, comp_labels = {}, [], []
    comp = [-1] * n
    for i in range(n):
        if not kept[i]:
            continue
        r = find(parent, i)
        c = comp_of_root.setdefault(r, len(comp_size))
        if c == len(comp_size):
            comp_size.append(0)
            comp_labels.append({})
        comp[i] = c
        comp_size[c] += 1
        comp_labels[c][labels[i]] = comp_labels[c].get(labels[i], 0) + 1
    by_class = {}
    for c, hist in enumerate(comp_labels):
        primary = sorted(hist.items(), key=lambda kv: (-kv[1], kv[0]))[0][0]
        by_class.setdefault(primary, []).append(c)

    split_of_comp = [0] * len(comp_size)
    for cls in sorted(by_class):
        comps = by_class[cls]
        rng = random.Random(f"{args.seed}:{cls}")
        rng.shuffle(comps)
        comps.sort(key=lambda c: -comp_size[c])
        if len(comps) < len(ratios):
            for slot, c in enumerate(comps):
                split_of_comp[c] = slot
            continue
        targets = apportion(sum(comp_size[c] for c in comps), ratios, rng)
        filled = [0] * len(ratios)
        for c in comps:
            s = max(range(len(ratios)), key=lambda s: (targets[s] - filled[s], -s))
            split_of_comp[c] = s
            filled[s] += comp_size[c]

    split_of_line = {}
    for i in range(n):
        if kept[i]:
            split_of_line[lines[i]] = split_of_comp[comp[i]]
    os.makedirs(args.out, exist_ok=True)
    outs = [open(os.path.join(args.out, f"{name}.jsonl"), "w", encoding="utf-8") for name in names]
    counts = [0] * len(names)
    with open(args.input, encoding="utf-8") as f:
        for number, text in enumerate(f, 1):
            s = split_of_line.get(number)
            if s is not None:
                outs[s].write(text if text.endswith("\n") else text + "\n")
                counts[s] += 1
    for o in outs:
        o.close()
    print(f"{n} valid records, rejected {rejected}, kept {sum(kept)}; " + ", ".join(f"{a}: {b}" for a, b in zip(names, counts)))


if __name__ == "__main__":
    main()
