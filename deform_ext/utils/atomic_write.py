"""Files that are either complete or absent, never half-written.

A write goes to a temporary file next to its target (same filesystem), is flushed and
fsynced, and is renamed over the target with ``os.replace`` (atomic on POSIX); then
the directory is fsynced. Readers see the old content or the new one, never a mix;
when the write fails, the temporary file is removed and the target is untouched. A
process killed mid-write leaves a ``.<name>.partial-<pid>`` file that
``remove_partial_files`` cleans up.
"""
import os
import os.path as osp
import re

PARTIAL_SUFFIX = '.partial-'
_PARTIAL_RE = re.compile(r'^\..+' + re.escape(PARTIAL_SUFFIX) + r'\d+$')


def _fsync_dir(directory: str) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY | getattr(os, 'O_DIRECTORY', 0))
    except OSError:
        return  # e.g. a filesystem that cannot open directories
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write(path: str, write) -> None:
    """Call ``write(file)`` on a temporary binary file, then move it to ``path``.

    Raises:
        Whatever ``write`` raises, after removing the temporary file.
    """
    path = osp.abspath(str(path))
    directory, name = osp.split(path)
    os.makedirs(directory, exist_ok=True)
    tmp = osp.join(directory, f'.{name}{PARTIAL_SUFFIX}{os.getpid()}')
    try:
        with open(tmp, 'wb') as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.remove(tmp)
        except FileNotFoundError:
            pass
        raise
    _fsync_dir(directory)


def write_text_atomic(path: str, text: str) -> None:
    """Replace the text file ``path`` atomically (UTF-8)."""
    atomic_write(path, lambda f: f.write(text.encode('utf-8')))


def remove_partial_files(directory: str) -> list:
    """Remove the temporary files of interrupted ``atomic_write`` calls in
    ``directory``; return their names."""
    removed = []
    try:
        names = os.listdir(directory)
    except OSError:
        return removed
    for name in names:
        if _PARTIAL_RE.match(name):
            try:
                os.remove(osp.join(directory, name))
                removed.append(name)
            except OSError:
                pass
    return removed
