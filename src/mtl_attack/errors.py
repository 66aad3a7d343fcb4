"""User errors: a bad config value, file or environment, told in one line.

A :class:`UserError` names the key or file, says what was wrong and how to fix
it; the entry points print it as one line on stderr and exit with status 2
(:func:`exit_on_user_error`). Anything else is a bug and keeps its traceback.
It subclasses ValueError, so code that checks inputs with ``except ValueError``
still sees it.
"""
from __future__ import annotations

import functools
import sys
from typing import Callable, TypeVar

__all__ = ["UserError", "USER_ERROR_STATUS", "one_line", "as_user_error", "exit_on_user_error"]

USER_ERROR_STATUS = 2  # as argparse and `mtl-attack` use for bad input

F = TypeVar("F", bound=Callable)


class UserError(ValueError):
    """Bad input the user can fix; its message is one line naming the key or file."""

    def __init__(self, message: str):
        super().__init__(one_line(message))


def one_line(text: object) -> str:
    """`text` with every run of whitespace (newlines included) made one space."""
    return " ".join(str(text).split())


def as_user_error(key: str, err: BaseException) -> UserError:
    """A ValueError of a checking function, re-raised for config key `key` (e.g. "layout.spec")."""
    message = one_line(err) or type(err).__name__
    return UserError(message if message.startswith(key) else f"{key}: {message}")


def exit_on_user_error(prog: str) -> Callable[[F], F]:
    """Decorate an entry point: a UserError prints "<prog>: error: <message>" on stderr and exits with 2."""

    def wrap(func: F) -> F:
        @functools.wraps(func)
        def inner(*args, **kwargs):
            try:
                return func(*args, **kwargs)
            except UserError as err:
                print(f"{prog}: error: {err}", file=sys.stderr, flush=True)
                sys.exit(USER_ERROR_STATUS)

        return inner  # type: ignore[return-value]

    return wrap
