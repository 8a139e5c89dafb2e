"""Where bytes live: a local path, or an fsspec URL (``s3://``, ``gs://``, ``az://``,
``memory://``; ``https://`` to read inputs).

The one seam between streamgex and storage. A store, lock or input is a *place*:
``place(path)`` gives a ``Local`` one for a path and a ``Remote`` one for a URL, with the
same small interface (what Zarr opens, read/write/list/remove an object, create one
only if absent, publish a finished build). Modules above go through it, never through
``if url:`` branches of their own.

Credentials and endpoints come from each service's standard environment
(``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``, ``AWS_ENDPOINT_URL``,
``GOOGLE_APPLICATION_CREDENTIALS``, ...), which the protocol libraries read themselves,
plus the options given by ``configure`` (the CLI's ``--storage-option KEY=VALUE`` and a
config's ``[storage]`` table), passed to every filesystem. The protocol libraries are
optional extras; a URL whose library is missing is one line naming the extra.

Zarr opens a remote place through ``zarr.storage.FsspecStore.from_url``: it builds an
``asynchronous=True`` filesystem on Zarr's own event loop (a synchronous one handed to
Zarr meets zarr-python#3487, "attached to a different loop").
"""

import contextlib
import importlib.util
import json
import os
import re
import shutil
from pathlib import Path

from .errors import StreamgexError

URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")

#: protocol -> (the library fsspec needs for it, the streamgex extra that installs it)
LIBRARIES = {
    "s3": ("s3fs", "s3"), "s3a": ("s3fs", "s3"),
    "gs": ("gcsfs", "gcs"), "gcs": ("gcsfs", "gcs"),
    "az": ("adlfs", "azure"), "abfs": ("adlfs", "azure"), "abfss": ("adlfs", "azure"),
    "http": ("aiohttp", "http"), "https": ("aiohttp", "http"),
    "memory": (None, None),
}
#: Protocols streamgex only reads from.
READ_ONLY = ("http", "https")

#: What streamgex asks of S3 clients unless ``configure`` says otherwise: botocore's
#: "standard" retries (500, 502, 503, 504, throttling and dropped connections, with
#: exponential backoff, up to 6 attempts; s3fs retries SlowDown on top) and a connect
#: timeout, so that an unreachable endpoint is an error within about a minute and a half
#: (6 attempts x 10 s, plus the backoff), not a hang.
S3_DEFAULTS = {"config_kwargs": {"connect_timeout": 10, "read_timeout": 120,
                                 "retries": {"max_attempts": 6, "mode": "standard"}}}
#: Protocols whose URLs start with a bucket (or container) that must exist.
BUCKETS = ("s3", "s3a", "gs", "gcs", "az", "abfs", "abfss")

_options = {}


def is_url(value):
    """Whether ``value`` names a place by URL (``file://`` counts as a local path)."""
    return isinstance(value, str) and bool(URL.match(value)) and not value.startswith("file://")


def local_or_url(value):
    """A path as given: a URL string stays one, ``file://x`` and anything else become a
    ``Path``."""
    if isinstance(value, str) and value.startswith("file://"):
        return Path(value[len("file://"):])
    return value.rstrip("/") if is_url(value) else Path(value)


def configure(options):
    """Set the options every filesystem gets (``{"endpoint_url": ..., "anon": False}``),
    replacing those set before. Values as the protocol library takes them."""
    _options.clear()
    _options.update(options or {})


def configured():
    """The options ``configure`` set, as a dict to ``configure`` again (in another process)."""
    return dict(_options)


def parse_options(items, *, where="--storage-option"):
    """``["KEY=VALUE", ...]`` -> a dict; a value is read as JSON (``true``, ``3``) and,
    failing that, kept as a string."""
    options = {}
    for item in items:
        key, sep, text = item.partition("=")
        if not sep or not key.strip():
            raise StreamgexError(f"{where} {item!r}: expected KEY=VALUE, e.g. "
                                 f"{where} endpoint_url=http://127.0.0.1:9000")
        try:
            options[key.strip()] = json.loads(text)
        except ValueError:
            options[key.strip()] = text
    return options


def options(url=None):
    """The options a filesystem for ``url`` gets: the protocol's defaults (``S3_DEFAULTS``)
    under those ``configure`` set."""
    if url is None or protocol(url) not in ("s3", "s3a"):
        return dict(_options)
    # fsspec keeps one filesystem per set of options; an endpoint from the environment
    # goes in them too, so another endpoint (a test's, a changed environment) gets its own
    endpoint = {"endpoint_url": os.environ["AWS_ENDPOINT_URL"]} \
        if os.environ.get("AWS_ENDPOINT_URL") else {}
    merged = {**S3_DEFAULTS, **endpoint, **_options}
    merged["config_kwargs"] = {**S3_DEFAULTS["config_kwargs"],
                               **_options.get("config_kwargs", {})}
    return merged


def is_service_error(exc):
    """Whether ``exc`` is a storage service's or its client's failure (an endpoint that
    cannot be reached, credentials refused, retries spent), not a bug of streamgex."""
    return any(cls.__module__.split(".")[0] in ("botocore", "aiobotocore", "aiohttp", "s3fs",
                                                "gcsfs", "adlfs", "google", "azure")
               for cls in type(exc).__mro__)


#: The codes of an S3 service refusing the credentials it was given (a HEAD request's
#: answer has no body, so its code is the status alone).
REFUSALS = ("InvalidAccessKeyId", "SignatureDoesNotMatch", "AccessDenied", "ExpiredToken",
            "InvalidToken", "TokenRefreshRequired", "AllAccessDisabled", "AccountProblem",
            "403")
#: botocore's own complaints, before any request: code -> what to say.
UNSENT = {"NoCredentials": "no credentials were found",
          "PartialCredentials": "the credentials given are incomplete (a key needs its secret)"}


def refusal(exc):
    """The code of the credentials refusal that ``exc`` is or was raised from (s3fs turns
    botocore's ``ClientError`` into a ``PermissionError`` caused by it), else None."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if type(exc).__name__.removesuffix("Error") in UNSENT:
            return type(exc).__name__.removesuffix("Error")
        response = getattr(exc, "response", None)
        code = str(response.get("Error", {}).get("Code", "")) if isinstance(response, dict) else ""
        if code in REFUSALS:
            return code
        exc = exc.__cause__
    return None


def explain(exc, url=""):
    """A service failure in one line, with what to check."""
    prefix = f"{url}: " if url else ""
    code = refusal(exc)
    if code:
        said = UNSENT.get(code) or f"the service refused these credentials ({code})"
        return (f"{prefix}{said}; set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or "
                f"AWS_PROFILE), or --storage-option key=... --storage-option secret=..., then "
                f"re-run the same command")
    text = " ".join(str(exc).split())[:300]
    return (f"{prefix}{type(exc).__name__}: {text}; check the endpoint (AWS_ENDPOINT_URL or "
            f"--storage-option endpoint_url=...), the credentials and the network, then re-run "
            f"the same command (it resumes)")


def probe(url, where=""):
    """Check, with one request, that the bucket of ``url`` exists and answers: an error in
    one line, within the connect timeout and retries, for an unreachable endpoint, refused
    credentials or a missing bucket. Returns ``url``."""
    check(url, where)
    if protocol(url) not in BUCKETS:
        return url
    fs, key = filesystem(url)
    bucket = key.split("/", 1)[0]
    prefix = f"{where} {url}" if where else url
    try:
        fs.invalidate_cache(bucket)
        fs.info(bucket)  # unlike exists(), says why it failed
    except FileNotFoundError:
        raise StreamgexError(f"{prefix}: bucket {bucket} does not exist; create it (streamgex "
                             f"makes none) or fix the URL") from None
    except PermissionError as exc:
        raise StreamgexError(explain(_why_refused(fs, bucket, exc), prefix)) from None
    except Exception as exc:
        if isinstance(exc, OSError) or is_service_error(exc):
            raise StreamgexError(explain(exc, prefix)) from None
        raise
    return url


def _why_refused(fs, bucket, exc):
    """The refusal ``exc`` of a HEAD request (no body, so no code but its 403) with the
    service's code when one more request, a listing of at most one key, gets it (S3 only:
    InvalidAccessKeyId, SignatureDoesNotMatch, AccessDenied)."""
    if not hasattr(fs, "call_s3"):
        return exc
    try:
        fs.call_s3("list_objects_v2", Bucket=bucket, MaxKeys=1)
    except Exception as again:
        return again if refusal(again) else exc
    return exc


def protocol(url):
    return url.split("://", 1)[0].lower()


def check(url, where=""):
    """Refuse, in one line, a URL whose protocol fsspec does not know or whose library is
    not installed (naming the extra that installs it). Returns ``url``."""
    scheme = protocol(url)
    library, extra = LIBRARIES.get(scheme, (None, None))
    prefix = f"{where} {url}" if where else url
    if library and importlib.util.find_spec(library) is None:
        raise StreamgexError(f"{prefix}: {scheme}:// needs the {library} package: "
                             f"pip install 'streamgex[{extra}]'")
    import fsspec

    try:
        fsspec.get_filesystem_class(scheme)
    except (ImportError, ValueError) as exc:
        raise StreamgexError(f"{prefix}: {scheme}:// is not a storage protocol streamgex can "
                             f"use ({exc})") from None
    return url


def check_writable(url, where=""):
    """``check``, and refuse a protocol streamgex only reads (``https://``)."""
    check(url, where)
    if protocol(url) in READ_ONLY:
        prefix = f"{where} {url}" if where else url
        raise StreamgexError(f"{prefix}: {protocol(url)}:// is read-only; write outputs to a "
                             f"local path or an object store (s3://, gs://, az://)")
    return url


def filesystem(url):
    """``(fs, path)``: a synchronous fsspec filesystem for ``url`` with the configured
    options, and the path inside it."""
    import fsspec

    check(url)
    return fsspec.url_to_fs(url, **options(url))


def zarr_store(url, *, read_only=False):
    """A ``zarr.storage.FsspecStore`` for ``url`` (see the module doc on why ``from_url``)."""
    from zarr.storage import FsspecStore

    check(url)
    return FsspecStore.from_url(url, storage_options=options(url), read_only=read_only)


def join(base, *parts):
    """``base/part/...`` for a path or a URL."""
    if is_url(base):
        return "/".join([str(base).rstrip("/"), *(str(p).strip("/") for p in parts)])
    return Path(base).joinpath(*parts)


def name(path):
    """The last component of a path or URL."""
    return str(path).rstrip("/").rsplit("/", 1)[-1] if is_url(path) else Path(path).name


def with_suffix_name(path, text):
    """``path`` with ``text`` appended to its last component (``x.zarr`` -> ``x.zarr.lock``)."""
    if is_url(path):
        return str(path).rstrip("/") + text
    path = Path(path).absolute()
    return path.with_name(path.name + text)


def place(path):
    """The ``Local`` or ``Remote`` place of ``path``."""
    return Remote(path) if is_url(path) else Local(path)


class Local:
    """A folder or file on a local (or mounted) filesystem. A store is built under a
    partial name beside its final one and renamed into place (``atomic``)."""

    remote = False

    def __init__(self, path):
        self.path = Path(path)

    def __str__(self):
        return str(self.path)

    def zarr(self, *, read_only=False):
        return str(self.path)

    def exists(self):
        return self.path.exists() or self.path.is_symlink()

    def read(self, key):
        return (self.path / key).read_bytes()

    def has(self, key):
        return (self.path / key).exists()

    def keys(self, prefix):
        """The names of the objects under ``prefix`` (relative to it)."""
        folder = self.path / prefix
        if not folder.is_dir():
            return set()
        return {f.relative_to(folder).as_posix() for f in folder.rglob("*") if f.is_file()}

    def create(self, data):
        """Write ``data`` at this path only if nothing is there; FileExistsError otherwise."""
        fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        with os.fdopen(fd, "wb") as f:
            f.write(data)

    def read_all(self):
        return self.path.read_bytes()

    def delete(self):
        with contextlib.suppress(FileNotFoundError):
            os.remove(self.path)

    def remove_tree(self):
        if self.path.is_dir() and not self.path.is_symlink():
            shutil.rmtree(self.path)
        else:
            self.path.unlink(missing_ok=True)


class Remote:
    """An object store prefix (or one object) named by URL. Nothing is renamed: a store
    is built under its final URL, and its root ``zarr.json``, rewritten last with
    ``complete`` set, is what makes it count (one PUT: a reader sees the old object or
    the new one whole)."""

    remote = True

    def __init__(self, url):
        self.url = str(url).rstrip("/")
        self.fs, self.key = filesystem(self.url)

    def __str__(self):
        return self.url

    def zarr(self, *, read_only=False):
        return zarr_store(self.url, read_only=read_only)

    def _at(self, key):
        return f"{self.key}/{key}"

    def exists(self):
        self.fs.invalidate_cache(self.key)
        return bool(self.fs.exists(self.key)) or bool(self.fs.find(self.key, maxdepth=None)[:1])

    def read(self, key):
        return self.fs.cat_file(self._at(key))

    def has(self, key):
        return self.fs.exists(self._at(key))

    def keys(self, prefix):
        root = self._at(prefix)
        self.fs.invalidate_cache(root)
        return {found[len(root) + 1:] for found in self.fs.find(root)}

    def create(self, data):
        """PUT ``data`` with ``If-None-Match: *`` (s3fs's ``mode="create"``): the service
        creates it only if no object is there, so of two creators exactly one wins. Raises
        FileExistsError for the other."""
        self.fs.pipe_file(self.key, data, mode="create")  # s3fs: a 412 -> FileExistsError

    def read_all(self):
        return self.fs.cat_file(self.key)

    def delete(self):
        with contextlib.suppress(FileNotFoundError):
            self.fs.rm_file(self.key)

    def remove_tree(self):
        """Delete every object under this prefix (callers decide that streamgex made them)."""
        self.fs.invalidate_cache(self.key)
        found = self.fs.find(self.key)
        if found:
            self.fs.rm(found)
        self.fs.invalidate_cache(self.key)


def stat(url):
    """What the service says of the object at ``url``: its size and, where it has one, its
    ETag (S3's, for a single-part upload, the MD5 of its content). Where a local file's
    record has its times and inode, a URL's has these; the content's SHA-256 decides
    whether an object re-uploaded since holds the same bytes."""
    fs, key = filesystem(url)
    fs.invalidate_cache(key)
    try:
        info = fs.info(key)
    except FileNotFoundError:
        raise StreamgexError(f"{url}: no such object") from None
    if info.get("type") == "directory":
        raise StreamgexError(f"{url}: a prefix (folder), not a file; streamgex reads raw "
                             f"inputs by URL as single files")
    etag = info.get("ETag") or info.get("etag")
    return {"size": int(info.get("size") or 0), **({"etag": str(etag).strip('"')} if etag else {})}


def cache_folder():
    """Where local copies of remote raw inputs are kept: ``$STREAMGEX_CACHE``, else
    ``~/.cache/streamgex``."""
    return Path(os.environ.get("STREAMGEX_CACHE") or Path.home() / ".cache" / "streamgex")


def fetch(url):
    """A local copy of the raw input file at ``url``, downloaded once per object version
    (size and ETag) into ``cache_folder()/inputs`` and reused after.

    The format readers (HDF5 for GCTX, gzip text) seek and re-read their file, which an
    object store serves poorly; one sequential download, streamed to disk, keeps their
    memory bounded by a chunk as for a local file. Disk: the file's size."""
    import hashlib

    from . import atomic

    found = stat(url)
    tag = hashlib.sha256(json.dumps([url, found], sort_keys=True).encode()).hexdigest()[:16]
    local = cache_folder() / "inputs" / tag / name(url)
    if local.is_file() and local.stat().st_size == found["size"]:
        return local
    fs, key = filesystem(url)
    with atomic.atomic_path(local) as tmp:
        fs.get_file(key, str(tmp))
    return local


def resolved(path):
    """``path`` made absolute (a URL as it is), as a record names an input."""
    return str(path).rstrip("/") if is_url(str(path)) else str(Path(path).resolve())


def scratch_for(path, suffix):
    """A local folder for a command's scratch data beside ``path`` (``PATH{suffix}``); for a
    URL, under ``cache_folder()/scratch``, one per URL."""
    if not is_url(str(path)):
        path = Path(path)
        return path.with_name(path.name + suffix)
    import hashlib

    tag = hashlib.sha256(str(path).encode()).hexdigest()[:16]
    return cache_folder() / "scratch" / f"{tag}-{name(path)}{suffix}"


def publish_folder(local, url, *, last):
    """Upload the files of the local folder ``local`` under ``url``, the object ``last`` (a
    manifest) after every other: what reads the folder by URL takes it as complete only
    once ``last`` is there (no rename on object storage). The old ``last`` is deleted
    first, so a folder being replaced never counts as complete halfway; objects of an old
    folder that the new one lacks are left (callers remove what they know they made)."""
    local = Path(local)
    fs, key = filesystem(url)
    with contextlib.suppress(FileNotFoundError):
        fs.rm_file(f"{key}/{last}")
    for file in sorted(p for p in local.rglob("*") if p.is_file()):
        relative = file.relative_to(local).as_posix()
        if relative != last:
            fs.put_file(str(file), f"{key}/{relative}")
    fs.put_file(str(local / last), f"{key}/{last}")
    fs.invalidate_cache(key)


def fetch_folder(url, *, last):
    """A local copy of the folder at ``url`` published by ``publish_folder`` (its ``last``
    object present), downloaded once per content of ``last`` into ``cache_folder()/folders``
    and reused after. FileNotFoundError when ``last`` is not there (absent or incomplete)."""
    import hashlib

    from . import atomic

    fs, key = filesystem(url)
    fs.invalidate_cache(key)
    manifest = fs.cat_file(f"{key}/{last}")
    local = cache_folder() / "folders" / hashlib.sha256(manifest).hexdigest()[:16] / name(url)
    if (local / last).is_file():
        return local
    with atomic.atomic_path(local) as tmp:
        tmp.mkdir()
        for found in fs.find(key):
            relative = found[len(key) + 1:]
            if relative != last:
                (tmp / relative).parent.mkdir(parents=True, exist_ok=True)
                fs.get_file(found, str(tmp / relative))
        (tmp / last).write_bytes(manifest)  # the one read above, whatever came since
    return local
