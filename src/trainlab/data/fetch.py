"""Find a dataset's files locally or download them; every byte SHA-256 verified.

A file is trusted when its SHA-256 equals the published archive's, or (for a
gzip file someone recompressed, like Debian's copies, or an uncompressed copy)
when the SHA-256 of its decompressed content equals the known content hash.
Downloads go to a temp file in the cache folder and are renamed into place only
after the checksum matches, so an interrupted or corrupt download leaves nothing.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import http.client
import urllib.error
import urllib.parse
import urllib.request
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from trainlab.errors import CorruptDataError, DataNotFoundError, DownloadError
from trainlab.fileio import atomic_open, remove_stale_parts
from trainlab.redaction import redact

# (file name, bytes done, bytes total or None)
DownloadProgress = Callable[[str, int, "int | None"], None]

_CHUNK = 1 << 20
_TIMEOUT_S = 60


@dataclass(frozen=True)
class RemoteFile:
    """One published file of a dataset and the hashes that identify it."""

    name: str
    sha256: str
    content_sha256: str | None = None  # SHA-256 of the decompressed bytes, for .gz files


@dataclass(frozen=True)
class Source:
    """Where a dataset's files come from."""

    dataset: str
    files: tuple[RemoteFile, ...]
    mirrors: tuple[str, ...]  # base URLs, tried in order
    system_dirs: tuple[Path, ...] = ()  # folders of OS packages, searched after the data dir


@dataclass(frozen=True)
class VerifiedFile:
    """A file whose hash matched: its path, its bytes (decompressed) and the SHA-256 that identifies it."""

    path: Path
    content: bytes
    sha256: str


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def cache_dir(data_dir: Path, source: Source) -> Path:
    return Path(data_dir) / source.dataset


def candidate_paths(remote: RemoteFile, source: Source, data_dir: Path) -> list[Path]:
    """Where a file may already be: the dataset's cache folder, the data dir itself, OS packages."""
    names = [remote.name]
    if remote.name.endswith(".gz"):
        names.append(remote.name[: -len(".gz")])
    folders = [cache_dir(data_dir, source), Path(data_dir), *source.system_dirs]
    return [folder / name for folder in folders for name in names]


def find_local(remote: RemoteFile, source: Source, data_dir: Path) -> Path | None:
    return next((p for p in candidate_paths(remote, source, data_dir) if p.is_file()), None)


def verify(path: Path, remote: RemoteFile, dataset: str) -> VerifiedFile:
    """Read ``path`` and check it is the published file (or its content); return its bytes."""
    raw = path.read_bytes()
    raw_sha = sha256_bytes(raw)
    gz = raw[:2] == b"\x1f\x8b"
    if raw_sha == remote.sha256 and not gz:
        return VerifiedFile(path, raw, raw_sha)
    if gz:
        try:
            content = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as exc:
            raise CorruptDataError(
                f"dataset file {str(path)!r} is not a readable gzip file ({exc}); it is truncated or "
                f"damaged: delete it and run `trainlab download --dataset {dataset}`"
            ) from None
    else:
        content = raw
    content_sha = sha256_bytes(content)
    if raw_sha == remote.sha256 or (remote.content_sha256 and content_sha == remote.content_sha256):
        # identify the data by its content where a content hash is published, so a
        # recompressed copy and the original record the same data version
        return VerifiedFile(path, content, content_sha if remote.content_sha256 else raw_sha)
    expected = f"{remote.sha256[:12]}… (published file)"
    if remote.content_sha256:
        expected += f" or {remote.content_sha256[:12]}… (its content)"
    raise CorruptDataError(
        f"dataset file {str(path)!r} has SHA-256 {raw_sha[:12]}…, expected {expected}; it is "
        f"damaged or a different version: delete it and run `trainlab download --dataset {dataset}`"
    )


def fetch_source(
    source: Source,
    data_dir: Path,
    *,
    download: bool,
    mirror: str | None = None,
    progress: DownloadProgress | None = None,
) -> dict[str, VerifiedFile]:
    """Every file of ``source``, verified: found locally, or downloaded when allowed."""
    found: dict[str, VerifiedFile] = {}
    for remote in source.files:
        path = find_local(remote, source, data_dir)
        if path is None:
            if not download:
                looked = ", ".join(str(p.parent) for p in candidate_paths(remote, source, data_dir)[::2])
                raise DataNotFoundError(
                    f"dataset {source.dataset!r}: file {remote.name!r} not found in {looked}; "
                    f"run `trainlab download --dataset {source.dataset}` or set data.download: true"
                )
            mirrors = ((mirror,) if mirror else ()) + source.mirrors
            path = download_file(remote, mirrors, cache_dir(data_dir, source), progress=progress)
        found[remote.name] = verify(path, remote, source.dataset)
    return found


def download_file(
    remote: RemoteFile,
    mirrors: tuple[str, ...],
    dest_dir: Path,
    *,
    progress: DownloadProgress | None = None,
) -> Path:
    """Download ``remote`` from the first mirror that serves the right bytes; atomic."""
    created = not dest_dir.exists()
    dest_dir.mkdir(parents=True, exist_ok=True)
    final = dest_dir / remote.name
    remove_stale_parts(dest_dir, final.name)  # left by a download that was killed
    failures = []
    for base in mirrors:
        url = base.rstrip("/") + "/" + remote.name
        try:
            _download_verified(url, remote, final, progress)
            return final
        except DownloadError as exc:
            failures.append(str(exc))
    if created and not any(dest_dir.iterdir()):
        dest_dir.rmdir()
    raise DownloadError(
        f"could not download {remote.name!r}: " + "; ".join(failures)
        + f"; nothing was written to {str(dest_dir)!r}. Check the network or set data.mirror, "
        f"or copy the file into {str(dest_dir)!r}"
    )


def _request(url: str) -> urllib.request.Request:
    """A GET request; credentials in the URL (https://user:token@host/) become a Basic Authorization header."""
    parts = urllib.parse.urlsplit(url)
    headers = {"User-Agent": "trainlab"}
    if parts.username is not None:
        user = urllib.parse.unquote(parts.username)
        password = urllib.parse.unquote(parts.password or "")
        headers["Authorization"] = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
        host = parts.hostname or ""
        url = urllib.parse.urlunsplit(parts._replace(netloc=f"{host}:{parts.port}" if parts.port else host))
    return urllib.request.Request(url, headers=headers)


def _download_verified(url: str, remote: RemoteFile, final: Path, progress: DownloadProgress | None) -> None:
    digest = hashlib.sha256()
    shown = redact(url)  # messages and logs never carry the mirror's credentials
    try:
        request = _request(url)
        with urllib.request.urlopen(request, timeout=_TIMEOUT_S) as response, atomic_open(final) as out:
            total = response.length
            done = 0
            while chunk := response.read(_CHUNK):
                out.write(chunk)
                digest.update(chunk)
                done += len(chunk)
                if progress:
                    progress(remote.name, done, total)
            if total is not None and done < total:
                raise DownloadError(f"{shown} ended after {done} of {total} bytes")
            got = digest.hexdigest()
            if got != remote.sha256:  # raising here discards the temp file
                raise DownloadError(f"{shown} sent a file with SHA-256 {got[:12]}…, expected {remote.sha256[:12]}…")
    except urllib.error.HTTPError as exc:
        raise DownloadError(f"{shown} answered HTTP {exc.code} {exc.reason}") from None
    except (urllib.error.URLError, http.client.HTTPException, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", None) or exc
        raise DownloadError(redact(f"{shown} failed: {reason}")) from None
