#!/usr/bin/env python3
"""Pillow side of scripts/bench_fetch.sh (Python 3 + Pillow, nothing else).

    pillow_bench.py make DIR N        writes N 224x224 RGB test pictures as DIR/pK.png and DIR/jK.jpg
    pillow_bench.py bench LIST PASSES fetch (http.client, keep-alive) and decode (Image.convert("RGB"))
                                      the URLs in LIST; prints JSON, best of PASSES
"""
import http.client
import io
import json
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlsplit

from PIL import Image, ImageDraw, ImageFilter


def make(folder, n):
    size = (224, 224)
    base_r = Image.linear_gradient("L").resize(size)
    base_g = Image.radial_gradient("L").resize(size)
    for k in range(n):
        noise = Image.effect_noise(size, 30 + k % 20).filter(ImageFilter.GaussianBlur(1.2))
        img = Image.merge("RGB", (base_r.rotate(k * 7 % 360), base_g, noise))
        draw = ImageDraw.Draw(img)
        for j in range(6):  # a few shapes so pictures differ
            x, y = (k * 37 + j * 53) % 200, (k * 91 + j * 29) % 200
            draw.ellipse((x, y, x + 20 + j * 3, y + 14 + j * 4), fill=((k * 13 + j * 40) % 256, (j * 70) % 256, (k * 5) % 256))
        img.save(f"{folder}/p{k}.png")
        img.save(f"{folder}/j{k}.jpg", quality=90)


class Client:
    """One keep-alive connection per thread."""
    def __init__(self, host, port):
        self.conn = http.client.HTTPConnection(host, port, timeout=30)

    def get(self, path):
        self.conn.request("GET", path)
        r = self.conn.getresponse()
        body = r.read()
        if r.status != 200:
            raise RuntimeError(f"{path}: http {r.status}")
        return body


def decode(b):
    im = Image.open(io.BytesIO(b))
    return im.convert("RGB")  # forces the decode


def bench(list_path, passes):
    urls = [l.strip() for l in open(list_path) if l.strip()]
    parts = urlsplit(urls[0])
    paths = [urlsplit(u).path for u in urls]

    def best(fn):
        t = float("inf")
        for _ in range(passes):
            t0 = time.perf_counter()
            fn()
            t = min(t, time.perf_counter() - t0)
        return len(urls) / t

    client = Client(parts.hostname, parts.port)
    bodies = [client.get(p) for p in paths]

    def decode_all():
        for b in bodies:
            decode(b)

    def fetch_decode_sequential():
        c = Client(parts.hostname, parts.port)
        for p in paths:
            decode(c.get(p))

    def fetch_decode_threads():
        local = {}
        def work(p):
            import threading
            c = local.setdefault(threading.get_ident(), Client(parts.hostname, parts.port))
            return decode(c.get(p)).size
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(work, paths))

    out = {
        "images": len(urls),
        "pillow": Image.__version__,
        "decode_images_per_s": round(best(decode_all)),
        "fetch_decode_sequential_images_per_s": round(best(fetch_decode_sequential)),
        "fetch_decode_8_threads_images_per_s": round(best(fetch_decode_threads)),
    }
    print(json.dumps(out, sort_keys=True))


if __name__ == "__main__":
    if sys.argv[1] == "make":
        make(sys.argv[2], int(sys.argv[3]))
    elif sys.argv[1] == "bench":
        bench(sys.argv[2], int(sys.argv[3]))
    else:
        sys.exit(__doc__)
