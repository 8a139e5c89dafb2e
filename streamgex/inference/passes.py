"""Predictions written one model piece at a time, each piece in a pass over the input.

D-GEX's five full-size partitions hold 3.9 GiB of weights, and loading one takes about
0.9 GiB more for a moment: ``predict`` holding them all peaked at 6.04 GiB
(``tools/bench_predict.py --model dgex``), over the 6 GB every other stage keeps. Here
each piece (``Predictor.in_pieces``: a D-GEX partition; any other model is one piece) is
loaded, run over every block of the input and freed before the next, as ``evaluate``
does: one partition's weights at a time. The input is read and normalized once per piece,
cheap beside the piece's matmuls, and each output chunk is read back and rewritten with
each piece's genes. The store's progress records the pass and the chunks done in it, so a
killed prediction resumes inside the pass it was in; a one-piece model makes one pass.
"""

import gc
import math

import numpy as np

from .. import store


def write_in_passes(group, pieces, inputs, finish, *, keep, desc, chunks_per_read):
    """Fill the output store ``group``'s ``expression``, piece by piece.

    Parameters
    ----------
    pieces : list of (start, stop, load)
        Networks over the model's target columns ``start:stop``; ``load()`` gives
        one's predict function ``(n, n_inputs) -> (n, stop - start)`` z-scores.
    inputs : callable
        ``inputs(start, stop) -> (stop - start, n_inputs) float32``: the model's
        input for those profiles.
    finish : callable
        ``finish(z, targets) -> block``: the values written for the z-scores of the
        target columns ``targets`` (indices into the model's targets).
    keep : (n_targets,) bool
        The targets the output holds, in model order (its gene axis).

    Returns
    -------
    int
        Profiles predicted by every piece in this call (a resumed call counts the part
        it did), for the streaming rate ``predict`` records.
    """
    array = group[store.EXPRESSION]
    rows, chunk = array.shape[0], array.chunks[0]
    chunks = math.ceil(rows / chunk) if rows else 0
    column = np.cumsum(keep) - keep  # the output column of each kept target
    passes = [(start, np.flatnonzero(keep[start:stop]) + start, load)
              for start, stop, load in pieces if keep[start:stop].any()]
    progress = store.state(group)["progress"]
    current, before = progress.get("pass", 0), progress.get("chunks_done", 0)
    done = current * chunks + before
    for k, (start, targets, load) in enumerate(passes):
        if k < current:
            continue
        if k > current:
            store.set_progress(group, **{"pass": k, "chunks_done": 0})
            current = k
        if store.state(group)["progress"]["chunks_done"] >= chunks:
            continue
        predict = load()

        def read(a, b, predict=predict, start=start, targets=targets):
            return finish(predict(inputs(a, b))[:, targets - start], targets)

        first = int(column[targets[0]])
        store.write_chunks(group, read, desc=desc, chunks_per_read=chunks_per_read,
                           genes=slice(first, first + len(targets)))
        del predict, read
        gc.collect()  # Keras's reference cycles would keep the network until later
    return round(rows * (1 - done / max(len(passes) * chunks, 1)))
