"""Read every structure file under some folders with gdl's reader and count what reads.

    python benchmarks/read_structures.py ../shared/data/db5_5 ../shared/data/masif_search_pairs

Files: ``*.pdb``, ``*.ent``, ``*.cif``, ``*.mmcif``, each optionally gzipped, found recursively.
Prints one line per file that fails or warns, then the totals (files read, atoms, seconds); exits 1
when any file fails.
"""

from __future__ import annotations

import sys
import time
import warnings
from pathlib import Path

from gdl.data.pdb import read_pdb, structure_files


def main(argv=None) -> int:
    folders = [Path(f) for f in (argv if argv is not None else sys.argv[1:])]
    if not folders:
        sys.exit("usage: python benchmarks/read_structures.py FOLDER [FOLDER ...]")
    files = structure_files(folders)
    read, atoms, failed, start = 0, 0, 0, time.perf_counter()
    for path in files:
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                atoms += len(read_pdb(path))
            read += 1
            for warning in caught:
                print(f"warning: {warning.message}")
        except Exception as error:  # noqa: BLE001 - every failure is reported, none stops the count
            failed += 1
            print(f"error: {path}: {error}")
    print(f"{read}/{len(files)} files read ({atoms} protein atoms) in {time.perf_counter() - start:.1f} s; {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
