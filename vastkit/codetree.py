"""Which files of the controller's working tree `code_source=local` ships to a rented host, and which it keeps back.

Shipped: tracked files and untracked ones git does not ignore, minus data and run outputs (`EXCLUDED_TOP`) and
minus anything that looks like a secret (`looks_secret`): an untracked `.envrc` or `.env.local` is not ignored
by most `.gitignore` files, and the host is a third party's machine. `tools/packtree.py` packs this list; the
launch plan reports what it left out.
"""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

# Never shipped even when not ignored: they are big, machine-specific, or produced on the instance.
EXCLUDED_TOP = frozenset({".venv", "venv", "data", "runs", "logs", "checkpoints", ".git", ".cache", "wandb"})

# File names (not paths) that look like credentials: env files, SSH keys, TLS keys, netrc, credential stores.
SECRET_NAME_PATTERNS = (
    r"\.env(\..*)?",  # .env, .env.local, .env.production
    r"\.envrc",
    r".*\.pem",
    r".*\.key",
    r".*\.p12|.*\.pfx",
    r"id_[A-Za-z0-9]+(-cert)?(\.pub)?",  # id_rsa, id_ed25519, id_ecdsa-cert.pub (not id_map.py)
    r".*credentials.*",
    r"\.netrc|_netrc|\.pgpass|\.pypirc",
)
_SECRET_NAME = re.compile("|".join(f"(?:{p})" for p in SECRET_NAME_PATTERNS), re.IGNORECASE)


class TreeError(RuntimeError):
    """The tree cannot be listed (not a git working tree)."""


@dataclass(frozen=True)
class TreeListing:
    files: list[str]  # repo-relative, sorted: what is shipped
    left_out: list[str] = field(default_factory=list)  # repo-relative, sorted: kept back because they look secret


def looks_secret(path: str) -> bool:
    """True for a path whose file name looks like a credential (`.envrc`, `deploy.pem`, `id_ed25519`, ...)."""
    return bool(_SECRET_NAME.fullmatch(PurePosixPath(path).name))


def list_tree(root: Path) -> TreeListing:
    """The files `code_source=local` ships from `root`, and the ones it keeps back as secrets."""
    try:
        out = subprocess.run(
            ["git", "-C", str(root), "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
            capture_output=True, check=True,
        ).stdout
    except (OSError, subprocess.CalledProcessError) as exc:
        detail = exc.stderr.decode().strip() if isinstance(exc, subprocess.CalledProcessError) else str(exc)
        raise TreeError(f"{root} is not a git working tree: {detail}") from None
    names = sorted({name for name in out.decode().split("\0") if name})
    candidates = [n for n in names if n.split("/", 1)[0] not in EXCLUDED_TOP and (root / n).is_file()]
    return TreeListing(files=[n for n in candidates if not looks_secret(n)],
                       left_out=[n for n in candidates if looks_secret(n)])
