"""Python tasks for tests/worker: imported by worker children as
"sample_tasks:fn" (test_executor.py puts this directory on sys.path)."""

import os
import signal
import sys


def add(a, b):
    return a + b


def greet(name, punctuation="!"):
    return f"hello {name}{punctuation}"


class Maths:
    @staticmethod
    def square(x):
        return x * x


def chatty(n_bytes):
    """Write a lot to stdout and stderr: it must not corrupt the worker pipes."""
    print("x" * n_bytes)
    os.write(1, b"raw write to fd 1\n")
    print("to stderr", file=sys.stderr)
    return "done"


def returns_set():
    return {1, 2, 3}


def raises_multiline():
    raise ValueError("first line\nsecond line")


def exits(code):
    sys.exit(code)


def hard_exit(code):
    os._exit(code)


def kill_self():
    os.kill(os.getpid(), signal.SIGKILL)


def pid():
    return os.getpid()


NOT_CALLABLE = 42


def nested(depth):
    """A value `depth` lists deep."""
    value = 0
    for _ in range(depth):
        value = [value]
    return value
