"""Write-then-rename: the one way streamgex writes a file that records state or results.

A reader (another process, the next run after a kill) sees either the old
file or the complete new one, never a truncated one: the content goes to
``STEM.partial.SUFFIX`` beside the target (the suffix kept, since Keras,
matplotlib and h5py go by it), is flushed to disk, and ``os.replace`` puts it
in place in one step.
"""

import contextlib
import json
import os
from pathlib import Path


def partial_path(path):
    """The temporary name a file is written under before its rename: ``emlp.partial.keras``."""
    path = Path(path)
    return path.with_name(f"{path.stem}.partial{path.suffix}")


def final_path(path):
    """The name ``partial_path`` was made from: ``emlp.partial.keras`` -> ``emlp.keras``."""
    path = Path(path)
    name = path.name
    if name.endswith(".partial"):
        return path.with_name(name[:-len(".partial")])
    at = name.rfind(".partial.")
    if at < 0:
        raise ValueError(f"{path}: not a partial name")
    return path.with_name(name[:at] + name[at + len(".partial"):])


def replace_folder(tmp, path):
    """Put the folder ``tmp`` in place of ``path`` (a folder, or nothing).

    A folder cannot be replaced in one step: the old one is moved aside under a
    partial name first, so a kill never leaves a half-deleted folder under the
    final name (at worst nothing there, with ``tmp`` complete beside it).
    """
    tmp, path = Path(tmp), Path(path)
    old = path.with_name(f"{path.name}.old.partial")
    remove(old)
    if path.exists() or path.is_symlink():
        os.replace(path, old)
    os.replace(tmp, path)
    remove(old)


def is_partial(path):
    """Whether ``path`` is a temporary name of ``partial_path`` (left by a kill)."""
    return ".partial" in Path(path).suffixes


@contextlib.contextmanager
def atomic_path(path):
    """Yield a temporary path to write; on success it replaces ``path``, on error it is removed.

    The writer may open the temporary path itself (h5py, matplotlib, numpy) or
    create a folder there (a checkpoint): a folder is renamed the same way.
    Missing parent folders are created, as for every output streamgex writes.
    """
    path = Path(path)
    tmp = partial_path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove(tmp)
    try:
        yield tmp
        if tmp.is_file():
            with open(tmp, "rb+") as f:
                os.fsync(f.fileno())
        if path.is_dir() and tmp.is_dir():
            replace_folder(tmp, path)
        else:
            os.replace(tmp, path)
    except BaseException:
        remove(tmp)
        raise


def write_text(path, text):
    """Write ``text`` to ``path`` atomically."""
    with atomic_path(path) as tmp:
        Path(tmp).write_text(text)
    return Path(path)


def write_json(path, data):
    """Write ``data`` as indented JSON to ``path`` atomically."""
    return write_text(path, json.dumps(data, indent=1) + "\n")


def read_json(path):
    """Read a JSON file written by ``write_json``."""
    return json.loads(Path(path).read_text())


def remove(path):
    """Delete a folder, a file or a link at ``path``, if there is one."""
    import shutil

    path = Path(path)
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)
