"""Files written whole or not at all: a reader never sees a partial file, and a failed write
leaves nothing behind."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def atomic_file(target: Path) -> Iterator[str]:
    """A temporary file beside `target`, with its extension, to write into; when the block
    completes it is published onto `target` (readers never see a partial file), and when the
    block fails it is removed."""
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.stem}.", suffix=target.suffix)
    os.close(fd)
    try:
        yield tmp
        publish(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def publish(tmp: str | Path, target: Path) -> None:
    """Give a finished temporary file the mode a new file would get (mkstemp makes it 0600),
    then rename it onto `target` in one step, so readers never see a partial file."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)
    os.replace(tmp, target)
