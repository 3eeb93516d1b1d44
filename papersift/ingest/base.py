"""What every source module shares: the record stream it yields and how it describes itself.

A source turns a target (a file path, a category, a date …) into a stream of records:
`Paper` (a good record), `Problem` (a bad one: reported, counted, skipped) and `Checkpoint`
(a place the stream can be resumed from). The runner batches the papers into the catalog and
saves the last checkpoint with each batch, so an interrupted ingest resumes where it stopped.
"""

from __future__ import annotations

import gzip
import io
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Union

from papersift.errors import SourceError
from papersift.models import Paper, Problem


@dataclass(frozen=True)
class Checkpoint:
    """The stream can restart right after this point by passing `position` back as `start`.

    `flush=True` asks the runner to commit what it holds now (e.g. the end of a fetched page,
    whose resumption token is only valid once the page's papers are in)."""

    position: str
    flush: bool = False


Record = Union[Paper, Problem, Checkpoint]


@dataclass(frozen=True)
class SourceSpec:
    """One `papersift ingest <name> TARGET [--option VALUE …]` source.

    `open` is called as open(target, settings, start, opts) and yields records; `start` is the last
    saved checkpoint position for this target (None on a fresh run); `opts` maps each declared option
    name to its string value or None. `resume_key(target, opts)` names the checkpoint; None means the
    source is not resumable (small inputs, where re-running is idempotent anyway).
    `options` declares the extra CLI flags: (name, help) pairs, e.g. ("from", "first datestamp").
    """

    name: str
    help: str
    example: str
    target_help: str
    open: Callable[..., Iterator[Record]]
    resume_key: Callable[[str, dict], str | None] = lambda target, opts: None
    options: tuple[tuple[str, str], ...] = ()
    target_required: bool = True
    parallel: bool = False  # big local files: parse in a second process (ingest/parallel.py)


def file_resume_key(source: str, target: str) -> str:
    """A file's checkpoint is tied to its exact bytes on disk: a changed file starts over."""
    path = Path(target).expanduser().resolve()
    try:
        st = path.stat()
    except OSError:
        return f"{source}:{path}"
    return f"{source}:{path}:{st.st_size}:{st.st_mtime_ns}"


def open_binary(target: str | os.PathLike) -> io.BufferedIOBase:
    """Open a local file for reading, transparently gunzipping `.gz`; a clear error if unreadable."""
    path = Path(target).expanduser()
    try:
        if path.is_dir():
            raise SourceError(f"{path} is a folder, not a file", hint="pass the file to ingest")
        raw = open(path, "rb")
    except FileNotFoundError:
        raise SourceError(f"no such file: {path}", hint="check the path (relative paths start where you run papersift)") from None
    except PermissionError:
        raise SourceError(f"cannot read {path}: permission denied", hint="check the file's permissions") from None
    except OSError as e:
        raise SourceError(f"cannot read {path}: {e.strerror}") from None
    if path.suffix == ".gz":
        return gzip.GzipFile(fileobj=raw)  # type: ignore[return-value]
    return raw


def numbered_lines(stream: io.BufferedIOBase, source: str, start: int = 0) -> Iterator[tuple[int, str | Problem]]:
    """(line number from 1, text) for each line after `start`; a line that is not UTF-8 becomes a Problem.

    Skipping the first `start` lines only splits bytes, so resuming deep into a big file is cheap.
    A file cut off mid-gzip is a Problem at the line where it broke, not a crash."""
    lineno = 0
    try:
        for raw in stream:
            lineno += 1
            if lineno <= start:
                continue
            try:
                yield lineno, raw.decode("utf-8")
            except UnicodeDecodeError as e:
                yield lineno, Problem(source, f"line {lineno}", f"not UTF-8 ({e.reason} at byte {e.start})")
    except (EOFError, gzip.BadGzipFile, OSError) as e:
        yield lineno + 1, Problem(source, f"line {lineno + 1}", f"file is truncated or corrupt: {e}")
