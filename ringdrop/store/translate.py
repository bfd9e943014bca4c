"""Turns apsw and OS errors into the store's exceptions at the boundary, worded for a person."""

from __future__ import annotations

import errno
import functools
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import ParamSpec, TypeVar

import apsw

from ringdrop.errors import DiskFullError, NotFoundError, RingdropError, StoreError

__all__ = ["db_error", "os_error", "translated", "translating"]

P = ParamSpec("P")
T = TypeVar("T")

_DISK_FULL = {errno.ENOSPC, errno.EDQUOT}


def os_error(e: OSError, what: str) -> StoreError | NotFoundError:
    """The store error for an OS error that happened while doing `what`."""
    where = f" ({e.filename})" if e.filename else ""
    if e.errno in _DISK_FULL:
        return DiskFullError(f"{what}: the disk is full{where}")
    if e.errno == errno.ENOENT:
        return NotFoundError(f"{what}: no such file or folder{where}")
    if e.errno in (errno.EACCES, errno.EPERM):
        return StoreError(f"{what}: permission denied{where}")
    if e.errno == errno.EROFS:
        return StoreError(f"{what}: the file system is read-only{where}")
    return StoreError(f"{what}: {e.strerror or e}{where}")


def db_error(e: apsw.Error, what: str) -> StoreError:
    """The store error for an SQLite error that happened while doing `what`."""
    if isinstance(e, apsw.FullError):
        return DiskFullError(f"{what}: the disk is full (the database could not grow)")
    if isinstance(e, apsw.BusyError | apsw.LockedError):
        return StoreError(
            f"{what}: the data directory's database stayed busy; another ringdrop process is "
            "holding it — try again"
        )
    if isinstance(e, apsw.CorruptError | apsw.NotADBError):
        return StoreError(f"{what}: the data directory's database is damaged ({e})")
    if isinstance(e, apsw.CantOpenError | apsw.PermissionsError | apsw.ReadOnlyError):
        return StoreError(f"{what}: the data directory's database cannot be written ({e})")
    return StoreError(f"{what}: database error ({e})")


@contextmanager
def translated(what: str) -> Iterator[None]:
    """Re-raises apsw and OS errors from the block as store errors; ringdrop errors pass."""
    try:
        yield
    except RingdropError:
        raise
    except apsw.Error as e:
        raise db_error(e, what) from e
    except OSError as e:
        raise os_error(e, what) from e


def translating(what: str) -> Callable[[Callable[P, T]], Callable[P, T]]:
    """Decorates a function so that apsw and OS errors leave it as store errors."""

    def decorate(fn: Callable[P, T]) -> Callable[P, T]:
        @functools.wraps(fn)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
            with translated(what):
                return fn(*args, **kwargs)

        return wrapper

    return decorate
