"""Job functions for the isolation tests: imported by loky worker processes by name."""
import os
import signal


def square_or_die(n: int) -> int:
    """n squared, except that odd multiples of 3 kill their worker process (a segfault)."""
    if n % 3 == 0 and n % 2:
        os.kill(os.getpid(), signal.SIGSEGV)
    return n * n
