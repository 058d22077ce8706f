"""`code_source=git`: will the instance check out what this checkout would train?

The instance clones `code_repo` (the checkout's `origin`, or an explicit URL) with no credentials and checks out
`code_version` (HEAD). That works only if the commit is on that remote, the remote can be read anonymously, and
the URL carries no token (it would land in the instance's `.git/config`). An uncommitted edit is silently not
trained, so a dirty tree is an error unless the launch says `allow_dirty=true`.
"""

from __future__ import annotations

import os
import re
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

_SCP_LIKE = re.compile(r"^(?:(?P<user>[^@/]+)@)?(?P<host>[^:/]+):(?P<path>[^/].*)$")  # git@github.com:o/r.git
# What the instance has: no credential helper, no prompt, no user config (insteadOf rewrites, tokens).
_ANONYMOUS_GIT_ENV = {"GIT_TERMINAL_PROMPT": "0", "GIT_ASKPASS": "true", "SSH_ASKPASS": "true",
                      "GIT_CONFIG_GLOBAL": os.devnull, "GIT_CONFIG_NOSYSTEM": "1"}
SHOWN_FILES = 8  # dirty files named in the message


@dataclass(frozen=True)
class CloneURL:
    url: str  # what the instance gets: no credentials, https instead of ssh
    problem: str | None = None
    note: str | None = None  # a rewrite or a caveat the launch mentions


@dataclass
class CodeCheck:
    repo: str = ""  # URL (or path) the instance clones
    version: str = ""  # the commit it checks out
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    dirty: list[str] = field(default_factory=list)  # tracked files with uncommitted changes


def clone_url(url: str) -> CloneURL:
    """The URL an instance can clone without credentials: `git@host:o/r` and `ssh://` become https; a URL with a
    user or token in it is refused (shown with the credentials removed, never with them)."""
    url = url.strip()
    scp = _SCP_LIKE.match(url) if "://" not in url else None
    if scp and not url.startswith("/"):
        https = f"https://{scp['host']}/{scp['path']}"
        return CloneURL(https, note=f"code_repo: {url} is an SSH URL (the instance has no key for it); the "
                                    f"instance clones {https} instead")
    if "://" not in url:
        if url.startswith("/"):
            return CloneURL(url, note=f"code_repo: {url} is a path on this machine; only an instance sharing this "
                                      "file system (the local emulator) can clone it")
        return CloneURL(url, problem=f"code_repo: {url!r} is neither a URL nor an absolute path")
    parts = urlsplit(url)
    host = parts.hostname or ""
    netloc = host + (f":{parts.port}" if parts.port else "")
    if parts.scheme in ("ssh", "git+ssh"):
        https = urlunsplit(("https", host, parts.path, "", ""))
        return CloneURL(https, note=f"code_repo: {_without_credentials(url)} is an SSH URL (the instance has no key "
                                    f"for it); the instance clones {https} instead")
    if parts.scheme not in ("https", "http", "git", "file"):
        return CloneURL(url, problem=f"code_repo: scheme {parts.scheme}:// is not one an instance can clone "
                                     "anonymously; use https://, git:// or -e code_source=local")
    clean = urlunsplit((parts.scheme, netloc, parts.path, parts.query, ""))
    if parts.username or parts.password:
        return CloneURL(clean, problem=(
            f"code_repo: the remote URL carries credentials ({parts.scheme}://***@{netloc}{parts.path}); they would "
            f"be written into the instance's .git/config on a third party's machine. Remove them (git remote "
            f"set-url origin {clean}, and keep the token in a credential helper) or use -e code_source=local"))
    if parts.scheme == "file":
        return CloneURL(clean, note=f"code_repo: {clean} is a path on this machine; only an instance sharing this "
                                    "file system (the local emulator) can clone it")
    return CloneURL(clean)


def _without_credentials(url: str) -> str:
    parts = urlsplit(url)
    netloc = (parts.hostname or "") + (f":{parts.port}" if parts.port else "")
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, ""))


def _git(root: Path, *args: str, timeout: float = 30.0, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL, env={**os.environ, **(env or {})})


def head_commit(root: Path) -> str:
    """HEAD's commit, or '' when `root` is no git checkout (or has no commit yet)."""
    try:
        done = _git(root, "rev-parse", "--verify", "--quiet", "HEAD^{commit}")
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return done.stdout.strip() if done.returncode == 0 else ""


def origin_url(root: Path) -> str:
    """`remote.origin.url`, or ''."""
    try:
        done = _git(root, "config", "--get", "remote.origin.url")
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return done.stdout.strip() if done.returncode == 0 else ""


def check_git_code(root: Path, *, repo: str | None = None, version: str | None = None,
                   config_paths: tuple[str, ...] = (), allow_dirty: bool = False,
                   timeout: float = 30.0) -> CodeCheck:
    """Everything `code_source=git` needs, checked on the controller. `repo`/`version` default to `origin` and
    HEAD; `config_paths` (repo-relative) must be in that commit."""
    check = CodeCheck()
    head = head_commit(root)
    if not head:
        check.problems.append(f"code_source=git: {root} is not a git checkout with a commit; use "
                              "-e code_source=local to upload the working tree")
        return check
    check.version = head
    if version:
        resolved = _git(root, "rev-parse", "--verify", "--quiet", f"{version}^{{commit}}")
        if resolved.returncode != 0:
            check.problems.append(f"code_version={version}: no such commit in this checkout")
            return check
        check.version = resolved.stdout.strip()
    short = check.version[:12]

    for path in config_paths:
        if _git(root, "cat-file", "-e", f"{check.version}:{path}").returncode != 0:
            check.problems.append(
                f"config {path} is not in commit {short} (untracked or not committed), which is what the instance "
                f"checks out: commit and push it, or use -e code_source=local")

    if check.version == head:
        status = _git(root, "status", "--porcelain=v1", "--untracked-files=no", "-z")
        check.dirty = sorted({entry[3:] for entry in status.stdout.split("\0") if len(entry) > 3})
        if check.dirty and not allow_dirty:
            shown = ", ".join(check.dirty[:SHOWN_FILES]) + (" ..." if len(check.dirty) > SHOWN_FILES else "")
            check.problems.append(
                f"code_source=git trains commit {short}, but the working tree has uncommitted changes to "
                f"{len(check.dirty)} tracked file(s) ({shown}) that the run would silently not have. Commit and "
                f"push them, use -e code_source=local (uploads the tree as it is), or -e allow_dirty=true")
        elif check.dirty:
            check.notes.append(f"allow_dirty=true: the instance trains commit {short} without the uncommitted "
                               f"changes to {', '.join(check.dirty[:SHOWN_FILES])}")

    given = repo or origin_url(root)
    if not given:
        check.problems.append(
            "code_source=git: this checkout has no origin remote for the instance to clone from. Push it to a "
            "repository the instance can read (git remote add origin URL && git push), name one with "
            "-e code_repo=URL, or use -e code_source=local")
        return check
    target = clone_url(given)
    check.repo = target.url
    if target.note:
        check.notes.append(target.note)
    if target.problem:
        check.problems.append(target.problem)
        return check
    check.problems.extend(_remote_problems(root, target.url, check.version, timeout))
    return check


def _remote_problems(root: Path, url: str, commit: str, timeout: float) -> list[str]:
    """Can `url` be read without credentials, and does it have `commit` (a tip, or an ancestor of one)?"""
    try:
        # Outside any repository: without the user's config, git would also drop a safe.directory entry that
        # a checkout owned by another user (CI containers) needs; ls-remote needs no repository.
        listed = subprocess.run(["git", "-c", "credential.helper=", "ls-remote", url], capture_output=True,
                                text=True, timeout=timeout, stdin=subprocess.DEVNULL, cwd="/",
                                env={**os.environ, **_ANONYMOUS_GIT_ENV})
    except subprocess.TimeoutExpired:
        return [f"code_repo: {url} did not answer git ls-remote within {timeout:g}s; the instance could not clone "
                "it either. Check the URL and network, or use -e code_source=local"]
    if listed.returncode != 0:
        said = " ".join(listed.stderr.split())[:300]
        return [f"code_repo: {url} cannot be read without credentials, so the instance cannot clone it (git "
                f"ls-remote: {said}). Make the repository public, name a readable one with -e code_repo=URL, or "
                "use -e code_source=local"]
    tips = {line.split("\t", 1)[0] for line in listed.stdout.splitlines() if "\t" in line}
    if commit in tips:
        return []
    # Local refs that contain the commit; if the remote has any of them, it has the commit too.
    contains = _git(root, "for-each-ref", "--contains", commit, "--format=%(objectname) %(*objectname)")
    if tips & set(contains.stdout.split()):
        return []
    return [f"commit {commit[:12]} is not on {url} (no branch or tag there contains it, as far as this checkout "
            f"knows): git push it first, or use -e code_source=local"]
