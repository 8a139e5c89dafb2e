"""Where training steps run: one device of this process (the CPU or a GPU), or the workers
of a cluster training one model data-parallel on ``tf.distribute.MultiWorkerMirroredStrategy``.

The loop (``training.loop``) asks its ``Placement`` for everything that differs between
the two, as tf.distribute's custom-training-loop tutorial sets a strategy up once:

- ``scope()``: where the model and optimizer are built (a device, or the strategy's
  scope: mirrored variables, worker 0's initial values broadcast to all);
- ``shard(batch)``: this worker's rows of a global batch (``batch`` stays the global
  batch, so the sequence of global batches is the one a single process sees);
- ``run(step, ...)``: a step on this worker's rows, gradients all-reduced across workers;
- ``chief``: only worker 0 writes the run folder (checkpoints, log, TensorBoard, best
  model); every worker reads the same checkpoint to resume.

Keras's ``model.fit`` under this strategy is broken since TF 2.16 (keras-team/keras#20585),
so the loop is a custom one under ``strategy.run``; Horovod has no Keras 3 support and
``keras.distribution`` is JAX-only. Every worker runs the same command with its own rank
(``--cluster HOST:PORT,... --rank I``), or takes both from a ``TF_CONFIG`` that a scheduler
(Slurm, Kubernetes, Ray Train) sets.

Waits are bounded: TensorFlow blocks in the strategy's constructor until every worker is
up, holding the GIL (not even SIGTERM stops it), so a ``watchdog`` process ends a worker
whose peers have not all joined within ``timeout`` seconds, with one line; a collective
whose peer died fails at once (connection reset) or after ``timeout`` (a peer hung), and
the loop turns that into one line too.
"""

import hashlib
import json
import logging
import os
import socket
import sys
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np

from ..errors import StreamgexError

log = logging.getLogger(__name__)

#: Seconds a worker waits for its peers (to join, or to answer in a collective): longer
#: than the slowest step plus the chief's checkpoint write at full size (~10 s).
TIMEOUT = 120.0


def local_ports(count):
    """``count`` free TCP ports on 127.0.0.1, for a cluster of workers on this machine (tests,
    benchmarks, trying ``--cluster`` out): taken by binding to port 0, then released."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def parse_cluster(text):
    """``"host:port,host:port"`` as a tuple of addresses, checked."""
    workers = tuple(part.strip() for part in text.split(",") if part.strip())
    for address in workers:
        host, _, port = address.rpartition(":")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise StreamgexError(f"--cluster {text}: {address!r} is not HOST:PORT")
    if len(set(workers)) != len(workers):
        raise StreamgexError(f"--cluster {text}: an address is listed twice")
    return workers


def from_tf_config(text):
    """``(workers, rank)`` from a ``TF_CONFIG`` (a ``chief`` first, then the ``worker``s, as
    TensorFlow numbers them); an error naming what is missing."""
    try:
        config = json.loads(text)
        cluster, task = config["cluster"], config["task"]
        workers = tuple(cluster.get("chief", [])) + tuple(cluster.get("worker", []))
        offset = len(cluster.get("chief", [])) if task["type"] == "worker" else 0
        if task["type"] not in ("chief", "worker"):
            raise ValueError(f"task type {task['type']!r}")
        rank = offset + int(task["index"])
    except (ValueError, KeyError, TypeError) as exc:
        raise StreamgexError(f"TF_CONFIG: not a cluster of workers ({exc}); it needs "
                             f'"cluster": {{"worker": [...]}} and "task": {{"type": '
                             f'"worker", "index": I}}') from None
    return workers, rank


@dataclass(frozen=True)
class Placement:
    """Where one network trains: ``device`` (``"cpu"``, ``"gpu:N"``) of each worker, and
    the cluster's ``workers`` (addresses in rank order; empty: this process alone)."""

    device: str = "cpu"
    workers: tuple = ()
    rank: int = 0
    timeout: float = TIMEOUT
    _strategy: list = field(default_factory=list, compare=False, repr=False)

    @property
    def world(self):
        return max(len(self.workers), 1)

    @property
    def distributed(self):
        return self.world > 1

    @property
    def chief(self):
        """Whether this worker writes the run folder (worker 0, or a process alone)."""
        return self.rank == 0

    def tf_device(self):
        """The TensorFlow device name: ``/CPU:0``, ``/GPU:N``."""
        kind, _, index = self.device.partition(":")
        return f"/{kind.upper()}:{index or 0}"

    def strategy(self):
        """The cluster's ``MultiWorkerMirroredStrategy`` (made on first use, under the
        watchdog); None for a process alone."""
        if not self.distributed:
            return None
        if not self._strategy:
            self._strategy.append(_join(self))
        return self._strategy[0]

    def scope(self):
        """Build the model and optimizer inside this: on the device, or mirrored on every
        worker (worker 0's initial values)."""
        import tensorflow as tf

        strategy = self.strategy()
        return strategy.scope() if strategy else tf.device(self.tf_device())

    def shard(self, arrays):
        """This worker's rows of a global batch (``np.array_split`` of its rows: every worker
        gets a part, empty for a last batch shorter than the world), and the batch's rows."""
        rows = int(arrays[0].shape[0])
        if not self.distributed:
            return arrays, rows
        part = np.array_split(np.arange(rows), self.world)[self.rank]
        start, stop = (int(part[0]), int(part[-1]) + 1) if len(part) else (0, 0)
        return tuple(a[start:stop] for a in arrays), rows

    def agree(self, identity):
        """Refuse to train unless every worker has the same ``identity`` (a JSON-able record of
        its options, data, model kind and world size): a worker started with other options
        or data would train another model into the same run. The first collective, so a peer
        that never joins ends this worker here (the watchdog)."""
        if not self.distributed:
            return
        text = json.dumps(identity, sort_keys=True, default=str)
        # 8 bytes of the digest as 4 float64s, summed exactly with their squares: the
        # workers' values are all equal if and only if n * sum(v^2) == sum(v)^2
        mine = np.frombuffer(hashlib.sha256(text.encode()).digest()[:8],
                             dtype=np.uint16).astype(np.float64)
        self.strategy()  # joined first, under a watchdog of its own
        with watchdog(self):
            total = self._reduce(np.concatenate([mine, mine * mine]))
        if not np.array_equal(self.world * total[4:], total[:4] ** 2):
            raise StreamgexError(
                f"worker {self.rank}: the workers of --cluster {','.join(self.workers)} were "
                f"started with other options, data or model; run the same command on every "
                f"worker, only --rank differing")

    def barrier(self):
        """Wait until every worker is here (after the chief prepared the run folder)."""
        if self.distributed:
            with watchdog(self):
                self._reduce(np.zeros(1))

    def _reduce(self, values):
        """The sum of ``values`` (float64) over the workers."""
        import tensorflow as tf

        strategy = self.strategy()
        tensor = tf.constant(values)

        @tf.function  # eagerly, the strategy warns of its overhead on every call
        def total():
            return strategy.reduce(tf.distribute.ReduceOp.SUM,
                                   strategy.run(lambda: tf.identity(tensor)), axis=None)

        return total().numpy()


def _join(placement):
    """Make the strategy, every worker waiting for the others; a watchdog ends this process
    with one line when they have not all joined within ``placement.timeout`` seconds."""
    import tensorflow as tf

    resolver = tf.distribute.cluster_resolver.SimpleClusterResolver(
        tf.train.ClusterSpec({"worker": list(placement.workers)}), task_type="worker",
        task_id=placement.rank, rpc_layer="grpc")
    options = tf.distribute.experimental.CommunicationOptions(
        timeout_seconds=placement.timeout)
    log.info("joining %s as worker %d of %d", ",".join(placement.workers), placement.rank,
             placement.world)
    with watchdog(placement):
        strategy = tf.distribute.MultiWorkerMirroredStrategy(
            cluster_resolver=resolver, communication_options=options)
    return strategy


#: The watchdog process: waits on its stdin (the worker's pipe) for up to argv[1] seconds;
#: when the worker has neither closed the pipe nor died by then, it prints argv[2] and ends
#: the worker.
_WATCHDOG = """
import os, select, signal, sys
ready, _, _ = select.select([sys.stdin], [], [], float(sys.argv[1]))
if not ready:
    sys.stderr.write(sys.argv[2] + "\\n")
    sys.stderr.flush()
    os.kill(int(sys.argv[3]), signal.SIGKILL)
"""


class watchdog:
    """Within this, the worker is ended (SIGKILL) with one line on stderr unless it leaves
    within ``placement.timeout`` seconds. TensorFlow waits for peers holding the GIL (no
    Python thread, signal handler or SIGTERM gets to run), so the watchdog is a small process
    of its own, which exits when the worker leaves or dies (its pipe closes)."""

    def __init__(self, placement):
        self.placement = placement

    def __enter__(self):
        import subprocess

        p = self.placement
        others = [a for i, a in enumerate(p.workers) if i != p.rank]
        message = (f"streamgex: error: worker {p.rank}: not every worker of the cluster "
                   f"answered within {p.timeout:.0f} s ({', '.join(others)}); start the "
                   f"same command with each --rank, or check the addresses")
        self.process = subprocess.Popen(
            [sys.executable, "-c", _WATCHDOG, str(p.timeout), message, str(os.getpid())],
            stdin=subprocess.PIPE)
        return self

    def __exit__(self, *exc):
        self.process.stdin.close()  # the watchdog's select returns: it exits quietly
        self.process.wait()
        return False


def peer_error(placement, exc):
    """The one-line error for a collective that failed: a peer died, hung or was cut off."""
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return StreamgexError(
        f"worker {placement.rank}: a peer of the cluster stopped answering "
        f"({type(exc).__name__}: {first[:120]}); re-run every worker's command: training "
        f"resumes from the last checkpoint")


def resolve_device(spec, gpus=None):
    """``--device``: ``auto`` (the first GPU TensorFlow sees, else the CPU), ``cpu``, ``gpu``
    or ``gpu:N``, as ``"cpu"`` or ``"gpu:N"``; an error for a GPU that is not there."""
    if gpus is None:
        import tensorflow as tf

        gpus = len(tf.config.list_physical_devices("GPU"))
    spec = (spec or "auto").lower()
    if spec == "auto":
        return "gpu:0" if gpus else "cpu"
    if spec == "cpu":
        return "cpu"
    kind, _, index = spec.partition(":")
    if kind != "gpu" or (index and not index.isdigit()):
        raise StreamgexError(f"--device {spec}: give auto, cpu, gpu or gpu:N")
    index = int(index or 0)
    if index >= gpus:
        seen = f"sees {gpus} GPU{'s' if gpus != 1 else ''}" if gpus else "sees no GPU"
        raise StreamgexError(f"--device {spec}: TensorFlow {seen} (`streamgex info --devices`"
                             f"); install streamgex[gpu] on a machine with one, or pass "
                             f"--device cpu")
    return f"gpu:{index}"


@contextmanager
def on_device(spec):
    """Within this, TensorFlow runs on ``--device`` ``spec`` (``resolve_device``): encode,
    evaluate and predict, which need no more of a placement than a device."""
    import tensorflow as tf

    with tf.device(Placement(resolve_device(spec)).tf_device()):
        yield


def placement(*, device="auto", cluster=None, rank=None, timeout=TIMEOUT):
    """The ``Placement`` of a ``train`` command: ``cluster`` (``--cluster``) and ``rank``, or
    ``TF_CONFIG`` where no cluster is given; ``device`` for every worker."""
    if cluster:
        workers = parse_cluster(cluster)
        if rank is None:
            raise StreamgexError("--cluster needs --rank I: this worker's place in the list "
                                 "(0 for the first)")
    elif os.environ.get("TF_CONFIG"):
        workers, found = from_tf_config(os.environ["TF_CONFIG"])
        rank = found if rank is None else rank
    else:
        if rank:
            raise StreamgexError("--rank needs --cluster HOST:PORT,HOST:PORT,...")
        workers, rank = (), 0
    if workers and not 0 <= rank < len(workers):
        raise StreamgexError(f"--rank {rank}: the cluster has {len(workers)} workers "
                             f"(ranks 0-{len(workers) - 1})")
    if len(workers) == 1:
        workers = ()
    return Placement(resolve_device(device), workers, rank, timeout)
