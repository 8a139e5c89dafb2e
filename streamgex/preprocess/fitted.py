"""Preprocessing steps as fitted objects, and the one runner that writes their stores.

A step has scikit-learn's shape (``QuantileTransformer``, ``StandardScaler``):

- its options are constructor arguments (``parameters()`` records them);
- ``prepare(ds, source)`` checks the input and plans what needs no pass over the data
  (before anything is written: a mistake leaves nothing behind);
- ``fit(ds, x)`` learns its state, attributes ending in ``_``, out of core
  with Dask (``x`` is the input's expression as a Dask array);
- ``transform(block)`` applies that state to one chunk of profiles, a pure
  numpy function (the rule itself lives beside it, testable in a line);
- ``save(group)`` / ``load(store)``: the fitted state lives in the output
  store under ``fitted/<name>/``, and every later step copies the ``fitted/``
  group forward, so a split part carries the whole chain's fitted state and
  ``predict`` loads, say, ``QuantileNormalize.load(split / "train")`` directly.

``run_step`` does what every such step shares: begin (or resume, or say "up to
date"), fit once, save the state, define the output, transform the chunks in
resumable waves, finish.
"""


import numpy as np

from .. import steps, store
from ..errors import StreamgexError

FITTED = "fitted"


class FittedStep:
    """Base of the chunk-wise preprocessing steps; see the module doc."""

    #: The step's name: its ``streamgex`` command, its store's ``step`` attr, its
    #: ``fitted/<name>`` group.
    name = ""
    #: Names of the fitted attributes saved with the store (arrays).
    state = ()
    #: What the output's values are (its store's ``units`` attr); None: the input's.
    units = None

    def parameters(self):
        """The options that decide the output (recorded in the store's attrs)."""
        raise NotImplementedError

    def prepare(self, ds, source):
        """Check the input dataset (of the store ``source``) before anything is written."""

    def fit(self, ds, x):
        """Learn the state from the input (``x``: its expression as a Dask array)."""
        return self

    def transform(self, block):
        """``(n, n_in) float32 -> (n, n_out) float32`` with the fitted state."""
        raise NotImplementedError

    def layout(self, ds):
        """The output's ``store.define_expression`` arguments but ``chunk_samples``."""
        return {"samples": ds.sample.values, "genes": ds.gene.values,
                "coords": {**steps.sample_coords(ds), **steps.gene_coords(ds)}}

    def output_width(self, ds):
        return ds.sizes["gene"]

    def save(self, group):
        """Write the fitted state to ``fitted/<name>/`` of an output store."""
        fitted = group.require_group(FITTED).require_group(self.name)
        fitted.attrs["parameters"] = self.parameters()
        for attr in self.state:
            _write_array(fitted, attr.rstrip("_"), getattr(self, attr))

    def load_state(self, group):
        """Set the fitted attributes from ``fitted/<name>/`` of ``group``."""
        fitted = _fitted_group(group, self.name)
        for attr in self.state:
            setattr(self, attr, fitted[attr.rstrip("_")][...])
        return self

    @classmethod
    def load(cls, path):
        """The fitted step saved in the store at ``path`` or carried into it by later steps."""
        store.open_store(path)  # refuses a missing or partial store
        group = store.open_group(path)
        parameters = dict(_fitted_group(group, cls.name).attrs["parameters"])
        return cls.from_parameters(parameters).load_state(group)

    @classmethod
    def from_parameters(cls, parameters):
        """A step with these recorded ``parameters`` (unfitted)."""
        return cls(**parameters)


def _fitted_group(group, name):
    """``fitted/<name>`` of a store's group, or an error saying the store holds no such step."""
    try:
        return group[FITTED][name]
    except KeyError:
        raise StreamgexError(f"{group.store_path}: holds no fitted {name} step; it was not made "
                             f"by a chain through `streamgex {name}`") from None


def _write_array(group, name, value):
    value = np.asarray(value)
    array = group.create_array(name, shape=value.shape, dtype=value.dtype, overwrite=True)
    array[...] = value


def carry_fitted(source, group):
    """Copy the ``fitted/`` groups of the store ``source`` into the output ``group``."""
    upstream = store.open_group(source)
    if FITTED not in upstream:
        return
    target = group.require_group(FITTED)
    for name, fitted in upstream[FITTED].groups():
        copy = target.require_group(name)
        copy.attrs.update(dict(fitted.attrs))
        for key, array in fitted.arrays():
            _write_array(copy, key, array[...])


def identity(step, source, ds=None):
    """The step, parameters and source ``step`` records for an output of ``source``
    (``store.begin``); checks the input first (``prepare``)."""
    step.prepare(store.open_store(source) if ds is None else ds, source)
    return {"step": step.name, "parameters": step.parameters(),
            "source": steps.source_of(source)}


def run_step(step, source, out, *, overwrite=False, scheduler=None):
    """Write the store ``out``: ``step`` fitted on ``source`` and applied chunk by chunk.

    Resumable (a killed run continues at its last wave of chunks with the
    state it saved), and a no-op when ``out`` is complete and made from the
    same input with the same parameters. Returns ``out`` as a Path (a URL: as given).
    """
    out = store.as_path(out)
    ds, x = steps.open_input(source)
    with steps.scheduler(scheduler):  # connected before any output exists
        group = store.begin(out, **identity(step, source, ds), overwrite=overwrite)
        if group is None:
            return out
        if "chunks_done" not in store.state(group)["progress"]:
            step.fit(ds, x)
            carry_fitted(source, group)
            # The state before writing starts: once it has, a resumed run reads it back.
            step.save(group)
            store.start_writing(group, **step.layout(ds), chunk_samples=x.chunks[0][0])
        else:
            step.load_state(group)
        y = x.map_blocks(step.transform, chunks=(x.chunks[0], (step.output_width(ds),)),
                         dtype=np.float32)
        steps.write_rows(group, y, desc=step.name)
    store.finish(group, attrs={"units": step.units} if step.units else None)
    return out
