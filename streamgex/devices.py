"""The devices TensorFlow sees, the one training uses, and whether bf16 is faster there.

TensorFlow places every op on its first GPU where it sees one, else on the CPU;
streamgex leaves that default alone, so "the device training uses" is that
rule. ``--precision bf16`` (Keras's mixed bfloat16) is faster than float32
only where the hardware multiplies bfloat16 itself: a GPU of compute
capability 8.0 or more (Ampere on), a CPU with AVX512_BF16 or AMX. Elsewhere
it runs, converted, at float32's pace or slower.
"""

from .quiet import import_tensorflow

#: /proc/cpuinfo flags of CPU instructions that multiply bfloat16.
CPU_BF16_FLAGS = ("avx512_bf16", "amx_bf16")
#: The first GPU compute capability with bfloat16 tensor cores (Ampere).
GPU_BF16_CAPABILITY = (8, 0)


def describe():
    """The devices TensorFlow sees, the CPU first, then each GPU in its order.

    Returns
    -------
    list of dict
        One per device: ``device`` (``"cpu"``, ``"gpu:0"``, ...), ``kind`` (CPU or GPU),
        ``name`` (None where unknown), ``compute_capability`` (GPUs, e.g. ``"8.0"``),
        ``bf16`` (True where bf16 is faster than float32 there, None where unknown) and
        ``why`` (what ``bf16`` was told by).
    """
    import_tensorflow()
    import tensorflow as tf

    found = [cpu_device(_cpuinfo())]
    for index, gpu in enumerate(tf.config.list_physical_devices("GPU")):
        details = tf.config.experimental.get_device_details(gpu)
        found.append(gpu_device(index, details.get("device_name"),
                                details.get("compute_capability")))
    return found


def default(devices=None):
    """The device training uses: ``"gpu:0"`` where TensorFlow sees a GPU, else ``"cpu"``."""
    devices = describe() if devices is None else devices
    return next((d["device"] for d in devices if d["kind"] == "GPU"), "cpu")


def cpu_device(cpuinfo):
    """The CPU's entry, from ``(model name, flags)`` as read from /proc/cpuinfo (None, None
    where it cannot be read: not Linux)."""
    name, flags = cpuinfo
    if flags is None:
        bf16, why = None, "CPU flags unknown (no /proc/cpuinfo)"
    else:
        present = [flag.upper() for flag in CPU_BF16_FLAGS if flag in flags]
        bf16 = bool(present)
        why = " and ".join(present) if present else "no AVX512_BF16 or AMX"
    return {"device": "cpu", "kind": "CPU", "name": name, "compute_capability": None,
            "bf16": bf16, "why": why}


def gpu_device(index, name, capability):
    """GPU ``index``'s entry from its name and ``(major, minor)`` compute capability (either
    None where TensorFlow does not say)."""
    if capability is None:
        bf16, version, why = None, None, "compute capability unknown"
    else:
        version = "{}.{}".format(*capability)
        bf16 = tuple(capability) >= GPU_BF16_CAPABILITY
        why = f"compute capability {version}" + ("" if bf16 else ", bf16 needs 8.0")
    return {"device": f"gpu:{index}", "kind": "GPU", "name": name,
            "compute_capability": version, "bf16": bf16, "why": why}


def format_devices(devices):
    """A line per device, then the device training uses and whether bf16 pays there."""
    answer = {True: "faster", False: "no faster", None: "unknown"}
    lines = [f"{d['device']:6s} {d['name'] or d['kind']}  (bf16 {answer[d['bf16']]}: "
             f"{d['why']})" for d in devices]
    chosen = default(devices)
    entry = next(d for d in devices if d["device"] == chosen)
    which = "its first GPU" if entry["kind"] == "GPU" else "no GPU seen"
    advice = {True: "--precision bf16 is faster there",
              False: "float32 (the default) is as fast there",
              None: "try --precision bf16 against float32 there"}[entry["bf16"]]
    lines.append(f"training uses {chosen} ({which}); {advice}")
    return "\n".join(lines)


def _cpuinfo(path="/proc/cpuinfo"):
    """(model name, set of flags) of the first CPU listed in ``path``; None for either where
    it cannot be read."""
    try:
        with open(path) as file:
            text = file.read()
    except OSError:
        return None, None
    fields = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep:
            fields.setdefault(key.strip(), value.strip())
    flags = fields.get("flags")  # x86 only: ARM lists "Features", unread here
    return fields.get("model name"), None if flags is None else set(flags.split())
