#!/usr/bin/env python3
"""Independent NumPy forward pass of torchvision's ResNet-18/34 (BasicBlock) for tests.

Usage: resnet_reference.py WEIGHTS.safetensors INPUT.f32 N C H W MODE OUT.f32

WEIGHTS is a torchvision-style state dict (conv1.weight, bn1.running_mean, layer1.0.conv1.weight,
..., fc.bias) in safetensors format (F32), read here with the standard library and NumPy only.
INPUT holds N*C*H*W little-endian float32 values (NCHW). MODE is "eval" (BatchNorm with the
running statistics) or "train" (BatchNorm with the batch statistics, biased variance).
The logits [N, classes] are written to OUT as little-endian float32.

Computed in float64 with plain im2col matrix products, following torchvision.models.resnet:
conv1 7x7/2 pad 3, bn1, relu, maxpool 3x3/2 pad 1, layer1..layer4 of BasicBlocks (stride 2 and
a 1x1 downsample conv + BN at the first block of layers 2-4), global average pool, fc.
"""
import json
import struct
import sys

import numpy as np


def read_safetensors(path):
    with open(path, "rb") as f:
        raw = f.read()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + n])
    base = 8 + n
    tensors = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        if info["dtype"] != "F32":
            raise ValueError(f"{name}: dtype {info['dtype']} (only F32 supported)")
        start, end = info["data_offsets"]
        tensors[name] = np.frombuffer(raw[base + start:base + end], dtype="<f4").astype(np.float64).reshape(info["shape"])
    return tensors


def conv2d(x, w, stride, pad):
    n, c, h, wd = x.shape
    o, ci, k, _ = w.shape
    assert ci == c
    xp = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    oh = (h + 2 * pad - k) // stride + 1
    ow = (wd + 2 * pad - k) // stride + 1
    cols = np.empty((n, c, k, k, oh, ow))
    for i in range(k):
        for j in range(k):
            cols[:, :, i, j] = xp[:, :, i:i + stride * oh:stride, j:j + stride * ow:stride]
    cols = cols.reshape(n, c * k * k, oh * ow)
    y = np.einsum("ok,nkp->nop", w.reshape(o, -1), cols)
    return y.reshape(n, o, oh, ow)


def batchnorm(x, t, prefix, mode, eps=1e-5):
    if mode == "train":
        mean = x.mean(axis=(0, 2, 3))
        var = x.var(axis=(0, 2, 3))
    else:
        mean = t[prefix + ".running_mean"]
        var = t[prefix + ".running_var"]
    g, b = t[prefix + ".weight"], t[prefix + ".bias"]
    return (x - mean[None, :, None, None]) / np.sqrt(var[None, :, None, None] + eps) * g[None, :, None, None] + b[None, :, None, None]


def maxpool(x, k=3, s=2, p=1):
    n, c, h, w = x.shape
    xp = np.pad(x, ((0, 0), (0, 0), (p, p), (p, p)), constant_values=-np.inf)
    oh, ow = (h + 2 * p - k) // s + 1, (w + 2 * p - k) // s + 1
    out = np.full((n, c, oh, ow), -np.inf)
    for i in range(k):
        for j in range(k):
            out = np.maximum(out, xp[:, :, i:i + s * oh:s, j:j + s * ow:s])
    return out


def relu(x):
    return np.maximum(x, 0)


def resnet(t, x, mode):
    x = relu(batchnorm(conv2d(x, t["conv1.weight"], 2, 3), t, "bn1", mode))
    x = maxpool(x)
    for stage in range(1, 5):
        b = 0
        while f"layer{stage}.{b}.conv1.weight" in t:
            p = f"layer{stage}.{b}"
            stride = 2 if stage > 1 and b == 0 else 1
            out = relu(batchnorm(conv2d(x, t[p + ".conv1.weight"], stride, 1), t, p + ".bn1", mode))
            out = batchnorm(conv2d(out, t[p + ".conv2.weight"], 1, 1), t, p + ".bn2", mode)
            if p + ".downsample.0.weight" in t:
                short = batchnorm(conv2d(x, t[p + ".downsample.0.weight"], stride, 0), t, p + ".downsample.1", mode)
            else:
                short = x
            x = relu(out + short)
            b += 1
    x = x.mean(axis=(2, 3))
    return x @ t["fc.weight"].T + t["fc.bias"]


def main():
    weights, inp, n, c, h, w, mode, out = sys.argv[1:9]
    n, c, h, w = int(n), int(c), int(h), int(w)
    x = np.fromfile(inp, dtype="<f4").astype(np.float64).reshape(n, c, h, w)
    logits = resnet(read_safetensors(weights), x, mode)
    logits.astype("<f4").tofile(out)


if __name__ == "__main__":
    main()
