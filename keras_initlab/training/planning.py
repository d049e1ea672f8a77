"""How `train_stacked` splits K models into groups (group size caps, CPU lanes and a memory plan), and how many
models that do not stack train side by side, one per lane (`lanes_for`).

A group is K models in one compiled graph; the groups of a wave train at the same
time, one per lane (on CPU one lane per usable core, since one compiled loop keeps
about one core busy); waves run one after the other, and a wave holds no more
models than the memory budget allows.

>>> from keras_initlab import build_mlp, load_dataset
>>> model, data = build_mlp([784, 30, 10]), load_dataset("mnist-10k")
>>> plan_groups(model, data, n_models=16, batch_size=10, device_name="/CPU:0", lanes=2)
[[8, 8]]
"""

from __future__ import annotations

import contextlib
import itertools
import math
import os
from pathlib import Path

import keras
import tensorflow as tf

MAX_GROUP_SIZE = {"/CPU:0": 16, "/GPU:0": 256}
"""Default most models in one compiled group, per device (`train_stacked`'s ``max_group_size``).

CPU: on a 2-core CPU (784-30-10, batch 10, 8,000 images), one group on one core
gains little beyond 16 models (16: 536k samples/s in total, 64: 577k), while
64 models as 2 waves of 2 concurrent groups of 16 reach 822k:
``python scripts/bench_training.py`` (BENCHMARKS.md).
GPU: not measured (no GPU was available); a generous cap, so that memory usually decides.
"""

MEMORY_FRACTION = 0.5
"""Share of the available memory (CPU RAM, or free GPU memory) a wave of groups may plan to use."""


def default_max_group_size(device_name: str) -> int:
    """`MAX_GROUP_SIZE` of ``device_name`` (the CPU value for any other device)."""
    return MAX_GROUP_SIZE.get(device_name, MAX_GROUP_SIZE["/CPU:0"])


def wave_size(device_name: str) -> int:
    """Most models one wave of groups trains at once on ``device_name``, before the memory plan:
    `default_max_group_size` per group, one group per `parallel_lanes`."""
    return default_max_group_size(device_name) * parallel_lanes(device_name)


def estimate_bytes(model: keras.Model, data, batch_size: int) -> tuple[int, int]:
    """Planned memory of stacked training: ``(shared bytes, bytes per model)``.

    Shared by all models of a group: the training and validation data on the
    device and an epoch's order. Per model, in float32: the weights four times
    (weights, gradients, the updated copy and the transposed copy made at the
    start and end of an epoch), the activations of one mini-batch (pre-activation,
    activation and their gradients), and the validation pass (pre-activation and
    activation of every validation example).
    """
    units = [layer.units for layer in model.layers if isinstance(layer, keras.layers.Dense)]
    return mlp_bytes([math.prod(model.input_shape[1:]), *units], len(data.x_train), len(data.x_val), batch_size)


def mlp_bytes(sizes: list[int], n_train: int, n_val: int, batch_size: int) -> tuple[int, int]:
    """`estimate_bytes` of an MLP with layer widths ``sizes`` (input first), before it is built."""
    params = sum(a * b + b for a, b in itertools.pairwise(sizes))
    units = sum(sizes[1:])
    shared = 4 * ((n_train + n_val) * (sizes[0] + 1) + n_train)
    per_model = 4 * (4 * params + 4 * batch_size * units + 2 * n_val * units)
    return shared, per_model


def memory_budget(device_name: str) -> int:
    """Bytes a wave of groups may plan to use: `MEMORY_FRACTION` of available RAM, or of the GPU's free memory."""
    if device_name.startswith("/GPU"):
        total = _gpu_memory_limit()
        used = tf.config.experimental.get_memory_info("GPU:0")["current"]
        return int(MEMORY_FRACTION * max(total - used, 0))
    return int(MEMORY_FRACTION * _available_ram())


def _available_ram() -> int:
    """``MemAvailable`` (/proc/meminfo), capped by a cgroup v2 memory limit; 4 GiB where neither is readable."""
    available = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                available = int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    limit, used = _cgroup_number("memory.max"), _cgroup_number("memory.current")
    if limit is not None and used is not None:
        available = limit - used if available is None else min(available, limit - used)
    return (4 << 30) if available is None else max(available, 0)


def _cgroup_number(name: str) -> int | None:
    """The first number in ``/sys/fs/cgroup/<name>`` (cgroup v2); None when absent or ``max`` (no limit)."""
    try:
        return int(Path("/sys/fs/cgroup", name).read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def _gpu_memory_limit() -> int:
    """The first GPU's memory limit as TensorFlow's allocator sees it (a virtual device's limit if set)."""
    from tensorflow.python.client import device_lib  # the one public-enough place that reports it

    for device in device_lib.list_local_devices():
        if device.device_type == "GPU":
            return int(device.memory_limit)
    raise RuntimeError("TensorFlow sees no GPU on this machine.")


def parallel_lanes(device_name: str) -> int:
    """Default number of groups run at the same time (`train_stacked`'s ``lanes``): the usable
    CPU cores on CPU (affinity, and a cgroup v2 CPU quota where there is one), 1 on a GPU.

    One XLA-compiled epoch of a group runs on about one core (a measured second
    core speeds a lone 16-model group up by only ~7%), so on CPU the models are
    split into one group per core and the groups' epochs run concurrently in threads.
    """
    if device_name.startswith("/GPU"):
        return 1
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on this platform
        cores = os.cpu_count() or 1
    quota = _cgroup_number("cpu.max")  # "<quota> <period>" microseconds, or "max <period>"
    if quota is not None:
        period = int(Path("/sys/fs/cgroup/cpu.max").read_text().split()[1])
        cores = min(cores, math.ceil(quota / period))
    return max(1, cores)


def lanes_for(model: keras.Model, data, batch_size: int, device_name: str, max_bytes: int | None = None) -> int:
    """How many runs of ``model``'s architecture train side by side, one model each in a thread of its own (`train`
    in lanes): `parallel_lanes`, at most as many as fit ``max_bytes`` (default: `memory_budget`) by
    `single_model_bytes`; at least 1.

    >>> from keras_initlab import build_mlp, load_dataset
    >>> lanes_for(build_mlp([784, 30, 10]), load_dataset("mnist-10k"), 10, "/CPU:0", max_bytes=10**9) >= 1
    True
    """
    per_model = single_model_bytes(model, data, batch_size)
    budget = memory_budget(device_name) if max_bytes is None else max_bytes
    return max(1, min(parallel_lanes(device_name), budget // per_model))


def single_model_bytes(model: keras.Model, data, batch_size: int) -> int:
    """Planned memory of one lane of `lanes_for`, in float32: the parameters eight times (the run's weights and
    optimizer state, up to two slots, and the lane's compiled copy of both), the outputs of every layer for one
    mini-batch twice (forward and gradient) and for the validation set once, and the data (each lane copies it
    to the device). Layers whose output shape is unknown (a subclassed model's) count nothing."""
    outputs = 0
    for layer in model.layers:
        with contextlib.suppress(AttributeError, ValueError):
            outputs += math.prod(layer.output.shape[1:])
    data_values = (len(data.x_train) + len(data.x_val)) * (math.prod(model.input_shape[1:]) + 1)
    return 4 * (8 * model.count_params() + (2 * batch_size + len(data.x_val)) * outputs + data_values)


def plan_groups(
    model: keras.Model,
    data,
    n_models: int,
    batch_size: int,
    device_name: str,
    max_bytes: int | None = None,
    lanes: int = 1,
    max_group_size: int | None = None,
) -> list[list[int]]:
    """Group sizes, in waves of groups trained at the same time: e.g. ``[[8, 8]]`` for 16 models on 2 lanes.

    Waves run one after the other; the groups of a wave run concurrently, one
    per lane (`parallel_lanes`). All groups of a wave are in memory at once, so
    a wave holds at most as many models as fit ``max_bytes`` (default:
    `memory_budget`) by `estimate_bytes`; a group holds at most
    ``max_group_size`` (default: `default_max_group_size`). Sizes are balanced
    (differ by at most one).

    Raises:
        MemoryError: when not even one model fits.
    """
    shared, per_model = estimate_bytes(model, data, batch_size)
    budget = memory_budget(device_name) if max_bytes is None else max_bytes
    fits = (budget - shared) // per_model
    if fits < 1:
        raise MemoryError(
            f"One stacked model needs about {per_model} bytes plus {shared} bytes of data; "
            f"the budget is {budget} bytes" + (f" (max_bytes={max_bytes})." if max_bytes is not None else ".")
        )
    cap = default_max_group_size(device_name) if max_group_size is None else max_group_size
    lanes = max(1, min(lanes, n_models, fits))
    per_group = min(cap, fits // lanes)
    n_groups = -(-n_models // per_group)
    n_groups = min(n_models, -(-n_groups // lanes) * lanes)  # whole waves: every lane busy
    sizes = group_sizes(n_models, n_groups)
    return [sizes[i : i + lanes] for i in range(0, len(sizes), lanes)]


def group_sizes(n_models: int, n_groups: int) -> list[int]:
    """Splits ``n_models`` into ``n_groups`` groups whose sizes differ by at most one, larger first."""
    base, extra = divmod(n_models, n_groups)
    return [base + 1] * extra + [base] * (n_groups - extra)
