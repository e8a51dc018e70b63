#!/usr/bin/env python3
"""How much of a store's file a reader maps when it touches a few pages.

LMDB reads through a shared read-only mapping of data.mdb. Whether a worker's
resident memory could be bounded by dropping that mapping now and then
(madvise(MADV_DONTNEED) after a commit) depends on what the kernel maps back
per page touched: on a read fault it also maps the neighbouring pages already
in the page cache ("fault-around", 64 KB by default, whole folios on
filesystems with large folios). This maps FILE, drops the mapping, touches
N random pages (one byte each, like a B-tree lookup landing on a leaf) and
prints the growth of the process's file-backed resident memory (RssFile).
A benchmark's report: it asserts nothing.

    bench/map_faultaround.py [--json OUT] FILE [N ...]   (default N: 1 16 256 4096)
"""
import json
import mmap
import os
import random
import sys

PAGE = mmap.PAGESIZE


def rss_file_kb():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("RssFile:"):
                return int(line.split()[1])
    return 0


def main():
    args = sys.argv[1:]
    out = None
    if args[:1] == ["--json"] and len(args) >= 2:
        out, args = args[1], args[2:]
    if not args:
        sys.exit(__doc__)
    path = args[0]
    counts = [int(a) for a in args[1:]] or [1, 16, 256, 4096]
    size = os.path.getsize(path)
    pages = size // PAGE
    fd = os.open(path, os.O_RDONLY)
    m = mmap.mmap(fd, 0, flags=mmap.MAP_SHARED, prot=mmap.PROT_READ)
    m.madvise(mmap.MADV_RANDOM)  # what LMDB asks for with MDB_NORDAHEAD
    with open(path, "rb") as f:  # every page in the page cache, as in a running store
        while f.read(1 << 20):
            pass
    rnd = random.Random(1)
    print(f"{path}: {size / 1e6:.0f} MB, {pages} pages of {PAGE} B")
    print("pages touched | mapped afterwards | per page touched | share of the file")
    rows = []
    for n in counts:
        m.madvise(mmap.MADV_DONTNEED)
        base = rss_file_kb()
        for p in rnd.sample(range(pages), min(n, pages)):
            m[p * PAGE]
        kb = rss_file_kb() - base
        print(f"{n:>13} | {kb / 1024:>14.1f} MB | {kb / n:>13.0f} KB | {100 * kb * 1024 / size:>16.1f} %")
        rows.append({"pages": n, "mapped_kb": kb})
    m.close()
    os.close(fd)
    if out:
        with open(out, "w") as f:
            json.dump({"file_bytes": size, "page_size": PAGE, "touched": rows}, f)


if __name__ == "__main__":
    main()
