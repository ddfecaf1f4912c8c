"""Functions the Executor tests run on the cluster (the nodes import them with --pythonpath tests/cli)."""

import time


class Unusual(Exception):
    """Not a built-in exception: result() raises TaskFailed for it."""


def square(x):
    return x * x


def add(a, b=0):
    return a + b


def divide(a, b):
    return a / b


def unusual(message):
    raise Unusual(message)


def pause(seconds, value=None):
    time.sleep(seconds)
    return value
