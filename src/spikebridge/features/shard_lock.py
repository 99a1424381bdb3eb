"""One process computes a shard: an exclusive ``flock`` per shard of a cache entry."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path


class ShardLock:
    """Exclusive ``fcntl.flock`` on ``<entry>/.shard-NNNNN.lock`` while one process computes a shard.

    The lock file is removed on release; a process that locked a file removed meanwhile
    (its inode no longer at the path) retries on the new one, so removal is race-free. The
    kernel drops the lock when its holder dies (``kill -9`` included). On NFS, ``flock`` is
    emulated with byte-range locks (Linux >= 2.6.12) and works across clients when the server
    supports locking; a mount with ``nolock`` makes locks local to each client, so two
    machines may compute the same shard: the result is still correct (identical content,
    atomic renames), only the work is done twice.
    """

    def __init__(self, path: Path):
        self.path, self.fd = Path(path), None

    def acquire(self, block: bool = True) -> bool:
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | (0 if block else fcntl.LOCK_NB))
            except BlockingIOError:
                os.close(fd)
                return False
            try:
                st = os.stat(self.path)
                same = (st.st_ino, st.st_dev) == (os.fstat(fd).st_ino, os.fstat(fd).st_dev)
            except FileNotFoundError:
                same = False
            if same:
                self.fd = fd
                return True
            os.close(fd)

    def release(self) -> None:
        if self.fd is not None:
            os.unlink(self.path)  # while still holding it: see the class docstring
            os.close(self.fd)
            self.fd = None
