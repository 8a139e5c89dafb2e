"""How long a training run has left: shown by the progress bar, each epoch's log line and
``status``.

A run's remaining work is its steps left to ``max_epochs`` in every network
(a D-GEX partition not started yet counts whole), at the speed measured so far.
It is an upper bound: early stopping may end a run sooner. The loop saves its
speed (``step_seconds``) and epoch length (``steps_per_epoch``) in each
checkpoint's state, so ``status`` can say it from the files alone.
"""


def steps_left(*, epoch, step, max_epochs, steps_per_epoch):
    """Steps from (``epoch`` epochs done + ``step`` steps into the next) to ``max_epochs``."""
    return max(0, (max_epochs - epoch) * steps_per_epoch - step)


def format_duration(seconds):
    """``"2 h 05 min"``, ``"14 min"``, ``"40 s"``."""
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    minutes = seconds // 60
    if minutes < 60:
        return f"{minutes} min"
    return f"{minutes // 60} h {minutes % 60:02d} min"


def remaining(run, states):
    """Seconds the unfinished ``run`` (a ``training.run.Run``) has left at most, from
    ``states`` (``run.progress()``: each started network's newest checkpoint state); None
    when no speed was measured yet."""
    measured = [s for s in states if s.get("step_seconds") and s.get("steps_per_epoch")]
    if not measured:
        return None
    max_epochs, last = run.options.max_epochs, measured[-1]
    seconds = 0.0
    for s in states:
        if not s.get("done"):
            known = s if s in measured else last  # a network resumed but not yet timed
            seconds += known["step_seconds"] * steps_left(
                epoch=s["epoch"], step=s["step"], max_epochs=max_epochs,
                steps_per_epoch=known["steps_per_epoch"])
    unstarted = run.networks - len(states)
    return seconds + unstarted * last["step_seconds"] * last["steps_per_epoch"] * max_epochs
