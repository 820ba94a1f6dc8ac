"""Copy embedding-cache entries into ``artifacts/vectors/`` as float16, for quick mode.

Quick mode reads these copies instead of encoding the catalogue and the members with each
committed adapter (``encoders.read_committed``). Make them from an empty cache, so that only
what the named chapters encode is copied (``artifacts/vectors/README.md`` has the commands):

    python tools/commit_vectors.py --chapter 03 CACHE/embeddings/smollm2-135m-*.npy

Each file is listed in ``artifacts/vectors/manifest.json`` with its shape, its SHA-256 and the
chapter that encoded it; ``tests/test_repository.py`` checks the files against the manifest.
"""

from __future__ import annotations

import argparse
import hashlib
import json
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "artifacts" / "vectors"


def sha256(path: Path) -> str:
    """The file's SHA-256, hex."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


def main(argv: list[str] | None = None) -> None:
    """Copy the given whole-list cache files (``stem-key.npy``) and update the manifest."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("files", nargs="+", type=Path, help="embedding-cache .npy files")
    parser.add_argument("--chapter", required=True, help="the chapter that encoded them, e.g. 03")
    args = parser.parse_args(argv)
    OUT.mkdir(parents=True, exist_ok=True)
    manifest_path = OUT / "manifest.json"
    manifest = json.loads(manifest_path.read_text()) if manifest_path.is_file() else {}
    for src in args.files:
        if "-bytext-" in src.name or src.suffix != ".npy":
            raise SystemExit(f"{src}: not a whole-list cache entry (stem-key.npy)")
        vectors = np.load(src)
        if vectors.ndim != 2 or not np.isfinite(vectors).all():
            raise SystemExit(f"{src}: expected a finite (rows, hidden) array")
        dest = OUT / src.name
        np.save(dest, vectors.astype(np.float16))
        manifest[src.name] = {"shape": list(vectors.shape), "sha256": sha256(dest),
                              "chapter": args.chapter}
        print(f"{dest.relative_to(ROOT)}: {vectors.shape}, {dest.stat().st_size / 2**20:.1f} MiB")
    manifest_path.write_text(json.dumps(dict(sorted(manifest.items())), indent=1) + "\n")


if __name__ == "__main__":
    main()
