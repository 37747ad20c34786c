"""Long fuzz campaign for ble_exporter.parser.parse (not collected by pytest: no test_ prefix).

    python3 tests/fuzz_parser.py --count 1000000 --workers 4 --seed 1

Four input families, each meant to reach a different depth of the decoders:
- random: arbitrary bytes (0-260 long) on a random UUID, random MAC text and key;
- mutated: published vectors (tests/test_parser.py VECTORS) with 1-8 byte edits, insertions,
  deletions, truncations and splices, parsed with their real MAC and key;
- sealed: random plaintext encrypted with the right key and nonce (encoder.seal_*), so the object
  walkers see hostile bytes *behind* a valid MIC;
- soup: BTHome v2/v1 and MiBeacon built from known object ids (and control bytes, lengths) in random
  order and count, behind random frame controls.
Any exception is a crash: the input is printed as a regression row and the exit status is 1.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import time
from collections import Counter
from concurrent.futures import ProcessPoolExecutor

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from support import mutate
from test_parser import VECTORS

from ble_exporter.encoder import seal_bthome_v1, seal_bthome_v2, seal_mijia, seal_pvvx
from ble_exporter.parser import OBJECT_TYPES, NoReading, NotDecodable, Reading, parse

UUIDS = (0xFCD2, 0x181C, 0x181E, 0x181A, 0xFE95)
MI_IDS = (0x1004, 0x1006, 0x100A, 0x100D, 0x4C01, 0x4C02, 0x4C08, 0x1001, 0x0000, 0xFFFF)
MI_CONTROLS = (0x5850, 0x5858, 0x5840, 0x5848, 0x5870, 0x5878, 0x5830, 0x3050, 0x2050, 0x3058)
KNOWN_IDS = sorted(OBJECT_TYPES)
SEEDS = [(p.values[0], p.values[1], p.values[2], p.values[3]) for p in VECTORS]
PAYLOADS = [payload for _, payload, _, _ in SEEDS]
Case = tuple[int, bytes, str, "bytes | None"]


def _mac(rng: random.Random) -> str:
    return rng.randbytes(6).hex(":").upper()


def _random(rng: random.Random) -> Case:
    uuid16 = rng.choice(UUIDS) if rng.random() < 0.97 else rng.randrange(0x10000)
    data = rng.randbytes(rng.choice((rng.randrange(20), rng.randrange(64), rng.randrange(261))))
    mac = _mac(rng) if rng.random() < 0.9 else rng.choice(("", "zz", "A4:C1:38:AA:BB", "a4:c1:38:aa:bb:cc"))
    key = rng.choice((None, rng.randbytes(16), rng.randbytes(rng.randrange(20))))
    return uuid16, data, mac, key


def _mutated(rng: random.Random) -> Case:
    uuid16, payload, mac, key = rng.choice(SEEDS)
    if rng.random() < 0.05:
        uuid16 = rng.choice(UUIDS)
    return uuid16, mutate(rng, payload, PAYLOADS), mac, key


def _soup_v2(rng: random.Random) -> bytes:
    out = bytearray()
    for _ in range(rng.randrange(12)):
        oid = rng.choice(KNOWN_IDS) if rng.random() < 0.95 else rng.randrange(256)
        out.append(oid)
        size = OBJECT_TYPES[oid].size if oid in OBJECT_TYPES else rng.randrange(4)
        if size < 0:
            size = rng.randrange(12)
            out.append(size if rng.random() < 0.9 else rng.randrange(256))
        out += rng.randbytes(size)
    return bytes(out[: rng.randint(0, len(out))] if rng.random() < 0.2 else out)


def _soup_v1(rng: random.Random) -> bytes:
    out = bytearray()
    for _ in range(rng.randrange(8)):
        fmt = rng.randrange(8)
        vlen = rng.randrange(10)
        out += bytes(((fmt << 5) | ((vlen + 1) & 0x1F), rng.choice(KNOWN_IDS))) + rng.randbytes(vlen)
    return bytes(out[: rng.randint(0, len(out))] if rng.random() < 0.2 else out)


def _soup_mi(rng: random.Random) -> bytes:
    """MiBeacon objects `[id u16][length][value]`, lengths mostly right, sometimes not."""
    out = bytearray()
    for _ in range(rng.randrange(6)):
        oid = rng.choice(MI_IDS) if rng.random() < 0.9 else rng.randrange(0x10000)
        size = rng.choice((1, 2, 4)) if rng.random() < 0.8 else rng.randrange(256)
        out += oid.to_bytes(2, "little") + bytes((size,)) + rng.randbytes(min(size, rng.randrange(8)))
    return bytes(out[: rng.randint(0, len(out))] if rng.random() < 0.2 else out)


def _sealed(rng: random.Random) -> Case:
    mac = _mac(rng)
    key = rng.randbytes(16)
    kind = rng.randrange(5)
    if kind == 4:
        plain = _soup_mi(rng) if rng.random() < 0.7 else rng.randbytes(rng.randrange(24))
        control = rng.choice(MI_CONTROLS) | 0x0008 if rng.random() < 0.9 else rng.randrange(0x10000)
        frame = seal_mijia(plain, mac, key, rng.randrange(2**32), payload_mac=rng.random() < 0.8, frame_control=control)
        return 0xFE95, frame, mac, key
    if kind == 0:
        plain = _soup_v2(rng) if rng.random() < 0.7 else rng.randbytes(rng.randrange(40))
        payload_mac = _mac(rng) if rng.random() < 0.3 else None
        return 0xFCD2, seal_bthome_v2(plain, mac, key, rng.randrange(2**32), payload_mac=payload_mac), mac, key
    if kind == 1:
        plain = _soup_v1(rng) if rng.random() < 0.7 else rng.randbytes(rng.randrange(40))
        return 0x181E, seal_bthome_v1(plain, mac, key, rng.randrange(2**32)), mac, key
    plain = rng.randbytes(6 if kind == 2 else 3)  # custom / atc1441 encrypted: any plaintext is valid
    return 0x181A, seal_pvvx(plain, mac, key, rng.randrange(256)), mac, key


def _soup(rng: random.Random) -> Case:
    if rng.random() < 0.25:
        mac = _mac(rng)
        control = rng.choice(MI_CONTROLS) if rng.random() < 0.9 else rng.randrange(0x10000)
        head = control.to_bytes(2, "little") + rng.randbytes(3)
        if control & 0x0010:
            head += bytes.fromhex(mac.replace(":", ""))[::-1]
        if control & 0x0020:
            head += rng.randbytes(rng.choice((1, 3, 5)))
        return 0xFE95, head + _soup_mi(rng), mac, rng.choice((None, rng.randbytes(16)))
    if rng.random() < 0.6:
        info = rng.choice((0x40, 0x42, 0x44)) if rng.random() < 0.9 else rng.randrange(256)
        head = bytes((info,)) + (rng.randbytes(6) if info & 0x02 else b"")
        return 0xFCD2, head + _soup_v2(rng), _mac(rng), None
    return 0x181C, _soup_v1(rng), _mac(rng), None


FAMILIES = (("random", _random), ("mutated", _mutated), ("sealed", _sealed), ("soup", _soup))


def run(seed: int, count: int) -> tuple[Counter[str], Counter[str], list[str]]:
    """Parse `count` generated inputs; return (inputs per family, outcomes, crash reports)."""
    rng = random.Random(seed)
    families: Counter[str] = Counter()
    outcomes: Counter[str] = Counter()
    crashes: list[str] = []
    for i in range(count):
        name, make = FAMILIES[i % len(FAMILIES)]
        uuid16, data, mac, key = make(rng)
        families[name] += 1
        try:
            result = parse(uuid16, data, mac, key)
        except Exception as exc:  # a crash is what we are looking for
            crashes.append(f"{type(exc).__name__}: {exc} <- ({uuid16:#06x}, {data.hex()!r}, {mac!r}, key={key!r})")
            continue
        if isinstance(result, Reading):
            outcomes["reading_encrypted" if result.encrypted else "reading"] += 1
        elif isinstance(result, NoReading):
            outcomes["no_reading"] += 1
        elif isinstance(result, NotDecodable):
            outcomes[result.reason] += 1
        else:
            crashes.append(f"returned {result!r} <- ({uuid16:#06x}, {data.hex()!r})")
    return families, outcomes, crashes


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--count", type=int, default=1_000_000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    args = ap.parse_args()
    workers = max(1, min(args.workers, args.count))
    shares = [args.count // workers + (1 if w < args.count % workers else 0) for w in range(workers)]
    start = time.perf_counter()
    families: Counter[str] = Counter()
    outcomes: Counter[str] = Counter()
    crashes: list[str] = []
    with ProcessPoolExecutor(workers) as pool:
        for fam, out, crash in pool.map(run, [args.seed * 1000 + w for w in range(workers)], shares):
            families.update(fam)
            outcomes.update(out)
            crashes.extend(crash)
    elapsed = time.perf_counter() - start
    total = sum(families.values())
    print(f"{total} inputs in {elapsed:.1f} s ({total / elapsed:,.0f}/s, {workers} workers, seed {args.seed})")
    print("families:", dict(sorted(families.items())))
    print("outcomes:", dict(outcomes.most_common()))
    print(f"crashes: {len(crashes)}")
    for line in crashes[:20]:
        print("  ", line)
    return 1 if crashes else 0


if __name__ == "__main__":
    sys.exit(main())
