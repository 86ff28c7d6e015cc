"""Chat template rendering under limits.

A chat template is code from the model's files (jinja2, sandboxed by transformers, which caps
range() but not loops, recursion or string growth). It renders on the main thread, between
generation steps, so a template that never ends would stall every request of this model.
"""

import sys
import threading
import time

TEMPLATE_SECONDS = 2.0
TEMPLATE_MEMORY_BYTES = 256 * 1024 * 1024


class TemplateLimitError(Exception):
    pass


def _peak_rss():
    import resource

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024


def render_template_with_limits(render):
    """Runs `render` with a wall-clock limit and a cap on how far it raises the process's peak
    memory. A timer signal checks both every 20 ms and raises between two Python steps of the
    render; one C-level step (a string doubling) can overshoot the memory cap once."""
    import signal

    if threading.current_thread() is not threading.main_thread():
        return render()
    started = time.monotonic()
    baseline = _peak_rss()

    def check(_signum, _frame):
        if time.monotonic() - started > TEMPLATE_SECONDS:
            raise TemplateLimitError(f"rendering took longer than {TEMPLATE_SECONDS:g} s")
        if _peak_rss() - baseline > TEMPLATE_MEMORY_BYTES:
            raise TemplateLimitError(f"rendering used more than {TEMPLATE_MEMORY_BYTES // 2**20} MB")

    previous = signal.signal(signal.SIGALRM, check)
    signal.setitimer(signal.ITIMER_REAL, 0.02, 0.02)
    try:
        return render()
    except RecursionError as e:
        raise TemplateLimitError("the template recursed too deeply") from e
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
