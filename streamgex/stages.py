"""A stage of the experiment as one object: what ``status`` says of it and how ``run`` makes
it, so that both ask the one question (is it done?) of the same function.

``run`` makes a stage only when ``status`` would not call it done, and ``status`` calls it
done only by the rule the stage's own command skips by (a store's step, parameters and
input content; a run's options and data; an evaluation's model files and store; the
report's evaluations): the two cannot disagree.
"""

import logging
from dataclasses import dataclass
from typing import Callable

log = logging.getLogger(__name__)

#: The states a status line can have, in the order a user acts on them.
STATES = ("done", "partial", "stale", "to do")


@dataclass(frozen=True)
class Line:
    """One line of ``status``: a stage (or one part of it), its state, and details."""

    name: str
    state: str
    detail: str = ""


@dataclass(frozen=True)
class Stage:
    """One stage: ``make()`` makes, resumes or finds up to date its output; ``lines()`` its
    status line(s) (an evaluation has one per dataset); ``after``: the names of the stages
    whose outputs it reads."""

    name: str
    make: Callable[[], object]
    lines: Callable[[], list]
    after: tuple = ()

    def done(self):
        return all(line.state == "done" for line in self.lines())


def make_all(stages, *, after=None):
    """Make every stage that is not done, in order (each after the ones it reads);
    ``after(stage)`` once each is made (``mirror.push_current``: a workdir in a bucket)."""
    for stage in stages:
        if stage.done():
            log.info("%s: up to date", stage.name)
            continue
        stage.make()
        if after is not None:
            after(stage)


def status(stages):
    """Every status line of ``stages``, in order; makes nothing.

    A stage found done whose input stage is not is stale: ``run`` remakes that input
    first, and then finds this stage made from other content (as its own rule says once
    the input is remade)."""
    found, pending = [], {}
    for stage in stages:
        lines = stage.lines()
        waiting = [name for name in stage.after if name in pending]
        if waiting:
            lines = [Line(line.name, "stale", f"after {waiting[0]} ({pending[waiting[0]]})")
                     if line.state == "done" else line for line in lines]
        if any(line.state != "done" for line in lines):
            pending[stage.name] = next(line.state for line in lines if line.state != "done")
        found += lines
    return found
