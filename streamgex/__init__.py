"""streamgex: out-of-core streaming training for gene expression inference.

The data travel through the package in the order of its folders: ``formats``
read raw files, ``ingest`` turns them into chunked Zarr ``store``s, and later
stages read those stores. ``simulate`` writes realistic raw files for trying
the whole pipeline without the real datasets.
"""

__version__ = "0.1.0"
