"""Built-in tasks and their registry, called in-process (no workers)."""

import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from p2pq.worker import builtins
from p2pq.worker.builtins import (
    UnknownTask,
    cpu_burn,
    echo,
    fail,
    fibonacci,
    get_task,
    is_prime,
    list_tasks,
    noop,
    register_task,
    reverse_string,
    sleep,
    to_uppercase,
    unregister_task,
)

BUILTIN_NAMES = {
    "noop", "echo", "sleep", "fibonacci", "is_prime",
    "reverse_string", "to_uppercase", "fail", "cpu_burn",
}


def module_level_task(x):
    """Double x (a task registered by a test)."""
    return 2 * x


@pytest.fixture
def clean_registry(monkeypatch):
    """Each registry test works on its own copy of the registry."""
    monkeypatch.setattr(builtins, "_registry", dict(builtins._registry))


# --- the tasks ------------------------------------------------------------------


def test_noop_returns_none():
    assert noop() is None


def test_echo_returns_single_arg_or_list():
    assert echo("a") == "a"
    assert echo("a", 2) == ["a", 2]
    assert echo() == []


@pytest.mark.parametrize(("n", "expected"), [(0, 0), (1, 1), (2, 1), (10, 55), (30, 832040)])
def test_fibonacci_small_values(n, expected):
    assert fibonacci(n) == expected


def test_fibonacci_is_exact_beyond_64_bits():
    assert fibonacci(100) == 354224848179261915075


def test_fibonacci_coerces_cli_strings():
    assert fibonacci("30") == 832040
    assert fibonacci(" 7 ") == 13
    assert fibonacci(10.0) == 55


def test_fibonacci_negative_is_a_clear_error():
    with pytest.raises(ValueError, match=r"^fibonacci needs n >= 0, got -3$"):
        fibonacci(-3)
    with pytest.raises(ValueError, match=r"^fibonacci needs n >= 0, got -3$"):
        fibonacci("-3")


@pytest.mark.parametrize("bad", ["abc", "3.5", 3.5, True, None, [3]])
def test_fibonacci_rejects_non_integers(bad):
    with pytest.raises(ValueError, match=r"^fibonacci needs an integer n, got "):
        fibonacci(bad)


def test_fibonacci_refuses_results_json_cannot_carry():
    assert len(str(fibonacci(builtins.FIBONACCI_MAX_N))) < 4300
    with pytest.raises(ValueError, match="fibonacci needs n <= 20000"):
        fibonacci(builtins.FIBONACCI_MAX_N + 1)


@given(st.integers(min_value=0, max_value=500))
def test_fibonacci_recurrence(n):
    assert fibonacci(n + 2) == fibonacci(n + 1) + fibonacci(n)
    assert fibonacci(str(n)) == fibonacci(n)


def _is_prime_slow(n):
    return n >= 2 and all(n % d for d in range(2, int(n**0.5) + 1))


def test_is_prime_matches_trial_division_below_5000():
    assert [n for n in range(-10, 5000) if is_prime(n)] == [
        n for n in range(-10, 5000) if _is_prime_slow(n)
    ]


@given(st.integers(min_value=-(10**3), max_value=10**9))
def test_is_prime_property(n):
    assert is_prime(n) == _is_prime_slow(n)


@pytest.mark.parametrize(
    ("n", "expected"),
    [
        (2**61 - 1, True),  # Mersenne prime
        (2**89 - 1, True),
        (561, False),  # Carmichael number
        (3215031751, False),  # strong pseudoprime to bases 2, 3, 5, 7
        (3825123056546413051, False),  # strong pseudoprime to bases 2..23
        ((2**61 - 1) * (2**31 - 1), False),
    ],
)
def test_is_prime_hard_cases(n, expected):
    assert is_prime(n) is expected


def test_is_prime_coerces_strings_and_rejects_junk():
    assert is_prime("97") is True
    assert is_prime("91") is False
    with pytest.raises(ValueError, match=r"^is_prime needs an integer n, got 'x'$"):
        is_prime("x")


def test_string_tasks():
    assert reverse_string("abc") == "cba"
    assert reverse_string("") == ""
    assert to_uppercase("hello World") == "HELLO WORLD"
    with pytest.raises(TypeError, match="^reverse_string needs a string, got int$"):
        reverse_string(5)
    with pytest.raises(TypeError, match="^to_uppercase needs a string, got list$"):
        to_uppercase(["a"])


def test_fail_raises_with_message():
    with pytest.raises(RuntimeError, match="^boom$"):
        fail("boom")
    with pytest.raises(RuntimeError, match="on purpose"):
        fail()


def test_sleep_coerces_and_validates():
    started = time.monotonic()
    assert sleep("0.01") is None
    assert time.monotonic() - started >= 0.01
    with pytest.raises(ValueError, match=r"^sleep needs seconds >= 0, got -1$"):
        sleep(-1)
    with pytest.raises(ValueError, match=r"^sleep needs a number of seconds, got 'soon'$"):
        sleep("soon")
    with pytest.raises(ValueError, match="sleep needs a number of seconds"):
        sleep(float("inf"))


def test_cpu_burn_spins_for_the_requested_time():
    started = time.monotonic()
    loops = cpu_burn("0.05")
    assert time.monotonic() - started >= 0.05
    assert loops > 0
    with pytest.raises(ValueError, match="cpu_burn needs seconds >= 0"):
        cpu_burn(-0.5)


# --- the registry -----------------------------------------------------------------


def test_list_tasks_has_every_builtin_with_a_one_line_doc():
    tasks = list_tasks()
    assert BUILTIN_NAMES <= set(tasks)
    assert list(tasks) == sorted(tasks)
    for name, doc in tasks.items():
        assert doc and "\n" not in doc, name


def test_get_task_returns_the_function():
    assert get_task("fibonacci") is fibonacci


def test_unknown_task_lists_known_names_and_suggests():
    with pytest.raises(UnknownTask) as info:
        get_task("fibonaci")
    message = str(info.value)
    assert message.startswith("unknown task 'fibonaci' (did you mean 'fibonacci'?)")
    for name in BUILTIN_NAMES:
        assert name in message
    assert isinstance(info.value, LookupError)


def test_unknown_task_without_close_match_has_no_suggestion():
    with pytest.raises(UnknownTask, match=r"^unknown task 'zzzzzz'; known tasks: "):
        get_task("zzzzzz")


def test_register_and_unregister(clean_registry):
    register_task("double", module_level_task)
    assert get_task("double")(4) == 8
    assert list_tasks()["double"] == "Double x (a task registered by a test)."
    unregister_task("double")
    with pytest.raises(UnknownTask):
        get_task("double")
    with pytest.raises(UnknownTask):
        unregister_task("double")


def test_register_refuses_silent_replacement(clean_registry):
    with pytest.raises(ValueError, match="already registered"):
        register_task("echo", module_level_task)
    register_task("echo", module_level_task, replace=True)
    assert get_task("echo") is module_level_task


@pytest.mark.parametrize("bad_name", ["", "pkg.mod:fn", "-flag", "9lives", "two words"])
def test_register_rejects_bad_names(clean_registry, bad_name):
    with pytest.raises(ValueError, match="task name must be"):
        register_task(bad_name, module_level_task)


def test_register_rejects_non_callables(clean_registry):
    with pytest.raises(TypeError, match="must be callable"):
        register_task("answer", 42)
