"""Files written whole or not at all: a reader never sees a partial file, and a failed write
leaves nothing behind."""

from __future__ import annotations

import contextlib
import os
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from .errors import DescentError

# a temporary file of a save killed this long ago (SIGKILL, power loss) is removed by the next
# save of the same target: no save of a live process takes this long
STALE_S = 600.0


def check_target(path, what: str) -> Path:
    """`path`, after checking that it can be written, before any work: not a folder, and in a
    folder that exists (or can be made) and is writable. Raises a one-line `DescentError`."""
    target = Path(path)
    if target.is_dir():
        raise DescentError(
            f"{str(target)!r} is a folder; give a file name for the {what}, "
            f"e.g. {str(target / ('result' + (target.suffix or '')))!r}"
        )
    folder = target.parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent  # a save makes the missing folders
    if not folder.is_dir():
        raise DescentError(f"cannot write the {what} under {str(folder)!r}: it is not a folder")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise DescentError(f"cannot write the {what} in {str(folder)!r}: permission denied")
    return target


def _remove_stale(target: Path) -> None:
    """Remove the temporary files that killed saves of `target` left beside it."""
    now = time.time()
    for left in target.parent.glob(f".{target.stem}.*{target.suffix}"):
        with contextlib.suppress(OSError):
            if now - left.stat().st_mtime > STALE_S:
                left.unlink()


@contextmanager
def atomic_file(target: Path) -> Iterator[str]:
    """A temporary file beside `target`, with its extension, to write into; when the block
    completes it is published onto `target` (readers never see a partial file), and when the
    block fails it is removed. Temporary files of earlier saves of `target` that were killed
    are removed first."""
    if Path(target).is_dir():
        raise IsADirectoryError(21, "Is a directory", str(target))
    _remove_stale(Path(target))
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
