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


def allocate(mib):
    """Allocate `mib` MiB, one MiB at a time (each page touched), and hold it."""
    held = [bytearray(2**20) for _ in range(mib)]
    return len(held)


def spawn_setsid_sleeper(seconds):
    """Start `sleep` in a new session (an orphan-to-be that escapes killpg); its pid."""
    import subprocess
    return subprocess.Popen(["sleep", str(seconds)], start_new_session=True).pid


def spawn_setsid_sleeper_then_sleep(path, seconds):
    """Start a setsid sleeper, write its pid to `path`, then sleep (to be killed)."""
    import time
    pid = spawn_setsid_sleeper(1000)
    with open(path, "w") as f:
        f.write(str(pid))
    time.sleep(seconds)


def allocate_until_refused(mib):
    """Allocate up to `mib` MiB; [MiB held when refused (or mib), peak RSS in KiB]."""
    held = []
    try:
        for _ in range(mib):
            held.append(bytearray(2**20))
    except MemoryError:
        pass
    count = len(held)
    del held
    with open("/proc/self/status") as f:
        peak_kib = next(int(line.split()[1]) for line in f if line.startswith("VmHWM:"))
    return [count, peak_kib]


def prints_and_returns(text):
    """Prints to both streams, and from a subprocess too: all of it belongs to the task's result."""
    import subprocess
    print(f"out: {text}")
    print(f"err: {text}", file=sys.stderr)
    subprocess.run([sys.executable, "-c", "print('from a child')"], check=True)
    return text


def prints_then_fails():
    print("working...")
    helper_that_fails()


def helper_that_fails():
    raise KeyError("missing")
