"""One error policy: a wrong type is a TypeError, a bad value a ValueError, in Keras' words, everywhere."""

import keras
import numpy as np
import pytest

from keras_initlab import SparseGaussian, build_convnet, build_mlp, compute_fans, load_dataset
from keras_initlab.checks import MAX_SHOWN, check_choice, check_int, check_ints, check_number, check_optional_int, shown


def test_ints():
    assert check_int(np.int64(3), "epochs", minimum=1) == 3 and type(check_int(np.int64(3), "e")) is int
    with pytest.raises(TypeError, match=r"^Argument `epochs` must be an int >= 1. Received: epochs=2.0$"):
        check_int(2.0, "epochs", minimum=1)
    with pytest.raises(TypeError, match="Received: epochs=True"):  # a bool is not an int here
        check_int(True, "epochs", minimum=1)
    with pytest.raises(ValueError, match=r"must be an int between 1 and 5. Received: n=6"):
        check_int(6, "n", minimum=1, maximum=5)
    assert check_optional_int(None, "seed") is None
    with pytest.raises(TypeError, match=r"`seed` must be an int or None. Received: seed='1'"):
        check_optional_int("1", "seed")


def test_numbers():
    assert check_number(np.float32(0.5), "learning_rate", positive=True) == 0.5
    with pytest.raises(TypeError, match=r"`l2_lambda` must be a finite number >= 0. Received: l2_lambda='5'"):
        check_number("5", "l2_lambda", minimum=0)
    for bad in (0.0, -1, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="`gain` must be a positive finite number"):
            check_number(bad, "gain", positive=True)


def test_lists_and_choices():
    assert check_ints((784, 30), "sizes", minimum=1, min_len=2) == [784, 30]
    with pytest.raises(TypeError, match=r"`filters\[0\]` must be an int >= 1. Received: filters\[0\]=True"):
        check_ints((True, 8), "filters", minimum=1, min_len=2, max_len=2)
    with pytest.raises(ValueError, match=r"`filters` must be a list of 2 int\(s\) >= 1"):
        check_ints([8, 16, 32], "filters", minimum=1, min_len=2, max_len=2)
    with pytest.raises(TypeError, match="`sizes` must be a list"):
        check_ints("784", "sizes")
    with pytest.raises(ValueError, match=r"`device` must be one of \('cpu', 'gpu'\). Received: device='tpu'"):
        check_choice("tpu", "device", ("cpu", "gpu"))
    with pytest.raises(TypeError, match="Received: device=0"):
        check_choice(0, "device", ("cpu", "gpu"))


def test_what_used_to_pass_still_passes():
    # NumPy 0-d arrays and scalar tensors are numbers; any sequence of ints is a list of sizes.
    assert check_number(np.array(0.25), "input_second_moment", minimum=0) == 0.25
    assert check_number(keras.ops.mean(keras.ops.ones((3,))), "x") == 1.0
    assert check_ints(range(3, 5), "sizes") == [3, 4]
    assert build_mlp(sizes=range(784, 786, 1)).layers[-1].units == 785
    with pytest.raises(TypeError):
        check_number(np.array(True), "x")
    with pytest.raises(ValueError, match="must be a finite number"):
        check_number(10**400, "l2_lambda")  # beyond float's range: a value error, not an OverflowError


def test_a_huge_value_is_never_echoed_back():
    with pytest.raises(TypeError) as info:
        check_int("9" * 1_000_000, "epochs")
    assert len(str(info.value)) < 3 * MAX_SHOWN and "(1000002 characters)" in str(info.value)
    assert shown("short") == "'short'"


@pytest.mark.parametrize(
    "call, error, message",
    [
        (lambda: build_convnet(filters=(True, 8)), TypeError, r"`filters\[0\]` must be an int >= 1"),
        (lambda: build_convnet(num_classes=0), ValueError, r"`num_classes` must be an int >= 1"),
        (lambda: build_mlp(l2_lambda="5", n_train=10), TypeError, r"`l2_lambda` must be a finite number >= 0"),
        (lambda: build_mlp(l2_lambda=5.0, n_train=10.0), TypeError, r"`n_train` must be an int >= 1"),
        (lambda: build_mlp(sizes=[784, 30.0, 10]), TypeError, r"`sizes\[1\]` must be an int >= 1"),
        (lambda: load_dataset().subset(10.0, 10), TypeError, r"`n_train` must be an int between 1 and 8000"),
        (lambda: compute_fans((3, 3.0)), TypeError, r"`shape\[1\]` must be an int >= 1"),
        (lambda: compute_fans((3, 0)), ValueError, r"`shape\[1\]` must be an int >= 1"),
        (lambda: SparseGaussian(seed="1"), TypeError, r"`seed` must be an int, None or a keras.random.SeedGenerator"),
    ],
)
def test_library_arguments(call, error, message):
    with pytest.raises(error, match=message):
        call()
