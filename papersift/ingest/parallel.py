"""Parse a big file in a second process while this one writes to the catalog.

Parsing is pure Python and so is much of an upsert; threads would share one core through the GIL.
A child process reads and parses, and hands records back over a pipe in chunks of plain tuples
(unpickling tuples is several times cheaper than unpickling dataclasses). The pickles only ever travel
from our own child to us over an anonymous pipe; nothing pickled is read from or written to disk.
The child stops by itself if the parent dies (a crash or `kill -9` of the ingest leaves no orphan).
"""

from __future__ import annotations

import dataclasses
import pickle
import queue
import struct
import subprocess
import sys
import threading
from typing import Iterator

from papersift import errors
from papersift.ingest.base import Checkpoint, Record, SourceSpec
from papersift.models import Paper, Problem

_PAPER_FIELDS = tuple(f.name for f in dataclasses.fields(Paper))
_CHUNK = 250
_QUEUED_CHUNKS = 64  # at most ~64 × 250 parsed papers wait in memory (~25 MB)


def _encode(record: Record) -> tuple:
    if isinstance(record, Paper):
        return ("p", *(getattr(record, f) for f in _PAPER_FIELDS))
    if isinstance(record, Checkpoint):
        return ("c", record.position, record.flush)
    return ("x", record.source, record.position, record.reason)


def _decode(item: tuple) -> Record:
    kind = item[0]
    if kind == "p":
        # the child built a valid Paper; filling __dict__ skips re-running the dataclass __init__
        paper = object.__new__(Paper)
        paper.__dict__.update(zip(_PAPER_FIELDS, item[1:]))
        return paper
    if kind == "c":
        return Checkpoint(item[1], item[2])
    return Problem(item[1], item[2], item[3])


def _send(out, msg) -> None:
    data = pickle.dumps(msg, protocol=pickle.HIGHEST_PROTOCOL)
    out.write(struct.pack("<Q", len(data)))
    out.write(data)


def _receive_raw(stream) -> bytes | None:
    header = stream.read(8)
    if len(header) < 8:
        return None
    (size,) = struct.unpack("<Q", header)
    return stream.read(size)


def _drain(stream, q: queue.Queue, stop: threading.Event) -> None:
    """Read messages off the pipe as fast as the child writes them (pipe reads release the GIL),
    so the child never waits on a full 64 KB pipe while we are busy writing to the catalog."""
    while not stop.is_set():
        data = _receive_raw(stream)
        while not stop.is_set():
            try:
                q.put(data, timeout=0.2)
                break
            except queue.Full:
                continue
        if data is None:
            return


def _produce(out) -> None:
    """The child: read the job from stdin, stream (kind, …) messages to `out`."""
    import importlib

    from papersift.settings import Settings

    module, source, target, values, start, opts = pickle.loads(sys.stdin.buffer.read())
    try:
        spec = next(s for s in importlib.import_module(module).SOURCES if s.name == source)
        settings = Settings(values, {k: "parent" for k in values})
        chunk: list[tuple] = []
        for record in spec.open(target, settings, start, opts):
            chunk.append(_encode(record))
            if len(chunk) >= _CHUNK:
                _send(out, ("chunk", chunk))
                chunk = []
        _send(out, ("chunk", chunk))
        _send(out, ("done",))
    except (KeyboardInterrupt, BrokenPipeError):  # the parent was interrupted or is gone
        return
    except errors.PapersiftError as e:
        _send(out, ("error", type(e).__name__, e.message, e.hint))
    except BaseException as e:  # an unexpected failure still reaches the parent, with its type
        _send(out, ("error", "PapersiftError", f"{type(e).__name__} while reading {target}: {e}", ""))
    out.flush()


def parsed_in_subprocess(spec: SourceSpec, target: str, settings, start: str | None, opts: dict) -> Iterator[Record]:
    """The records of `source` on `target`, parsed in a child process (`python -m papersift.ingest.parallel`).
    The child ends by itself when this process dies: its next write hits a closed pipe."""
    proc = subprocess.Popen([sys.executable, "-m", "papersift.ingest.parallel"],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, bufsize=1 << 20)
    q: queue.Queue = queue.Queue(maxsize=_QUEUED_CHUNKS)
    stop = threading.Event()
    try:
        job = (spec.open.__module__, spec.name, target, dict(settings), start, opts)
        proc.stdin.write(pickle.dumps(job))
        proc.stdin.close()
        reader = threading.Thread(target=_drain, args=(proc.stdout, q, stop), daemon=True)
        reader.start()
        while True:
            data = q.get()
            msg = None if data is None else pickle.loads(data)
            if msg is None:
                proc.wait(timeout=10)
                raise errors.SourceError(f"the reader of {target} stopped unexpectedly (exit code {proc.returncode})")
            if msg[0] == "chunk":
                for item in msg[1]:
                    yield _decode(item)
            elif msg[0] == "done":
                return
            else:
                cls = getattr(errors, msg[1], errors.PapersiftError)
                try:
                    error = cls(msg[2], hint=msg[3] or None)
                except TypeError:  # an error class with its own constructor
                    error = errors.PapersiftError(msg[2], hint=msg[3] or None)
                raise error
    finally:
        stop.set()
        if proc.poll() is None:
            proc.terminate()
        proc.wait(timeout=10)
        proc.stdout.close()


if __name__ == "__main__":
    _produce(sys.stdout.buffer)
