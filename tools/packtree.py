"""Pack the controller's working tree for `code_source=local`: tracked and untracked files that git does not
ignore, minus data, run outputs and files that look like secrets (`vastkit.codetree`), into a byte-for-byte
reproducible .tar.gz.

Reproducible (sorted names, zeroed times and owners, gzip without a timestamp) so that its sha256 names the
tree's content: the bootstrap role skips the upload when the instance already has that tree.

    python -m tools.packtree --root . --out .cache/vastkit/code-tree.tar.gz
    # prints {"path", "sha256", "files" (a count), "names" (the paths, which the role uses to prune),
    #         "left_out" (paths kept back because they look like secrets)}
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import os
import sys
import tarfile
import tempfile
from pathlib import Path

from vastkit.codetree import TreeError, list_tree


def pack(root: Path, out: Path) -> dict:
    try:
        listing = list_tree(root)
    except TreeError as exc:
        raise SystemExit(f"packtree: {exc}") from None
    files = listing.files
    out.parent.mkdir(parents=True, exist_ok=True)
    # A private temporary name: launches running side by side pack the same tree at the same time.
    fd, tmp_name = tempfile.mkstemp(dir=out.parent, prefix=f".{out.name}.", suffix=".tmp")
    tmp = Path(tmp_name)
    with os.fdopen(fd, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0, filename="") as gz, \
            tarfile.open(fileobj=gz, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name in files:
            info = tar.gettarinfo(str(root / name), arcname=name)
            info.mtime, info.uid, info.gid, info.uname, info.gname = 0, 0, 0, "", ""
            info.mode = 0o755 if info.mode & 0o111 else 0o644
            if info.isfile():
                with open(root / name, "rb") as handle:
                    tar.addfile(info, handle)
            else:
                tar.addfile(info)
    tmp.replace(out)
    digest = hashlib.sha256(out.read_bytes()).hexdigest()
    return {"path": str(out), "sha256": digest, "files": len(files), "names": files, "left_out": listing.left_out}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.packtree", description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=Path("."))
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    print(json.dumps(pack(args.root.resolve(), args.out)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
