"""A run's untrained model, its loss and its step-0 batch (`initlab.comparison.builder`)."""

import numpy as np
import pytest

from initlab.comparison import ModelBuilder, diagnostic_batch, load_spec_data
from initlab.spec import ComparisonSpec, SpecError
from keras_initlab import build_mlp
from keras_initlab.models import default_loss


def test_the_builder_builds_what_build_mlp_builds_and_lsuv_rescales_on_at_most_the_training_set():
    spec = ComparisonSpec.from_dict(
        {"name": "b", "schemes": ["he", "lsuv"], "subset": {"train": 100, "val": 50}, "l2_lambda": 5.0}
    )
    data = load_spec_data(spec)
    builder = ModelBuilder(spec, data)
    model = builder.build(spec.schemes[0], seed=3)
    reference = build_mlp(scheme="he", l2_lambda=5.0, n_train=100, seed=3)
    for mine, theirs in zip(model.get_weights(), reference.get_weights(), strict=True):
        np.testing.assert_array_equal(mine, theirs)
    assert builder.loss(model) is default_loss(model)
    assert builder.initial(spec.schemes[0], seed=0)[1] is None  # no data-dependent step
    assert builder.lsuv_examples == 100  # the spec's 512, capped by the 100 training examples
    _, steps = builder.initial(spec.schemes[1], seed=0)
    assert len(steps) == 2 and all(abs(step.std_after - 1) < 0.1 for step in steps)
    x, y = diagnostic_batch(data)
    assert len(x) == len(y) == 50  # all the validation examples, fewer than DIAGNOSTIC_EXAMPLES


def test_a_factory_that_cannot_be_loaded_is_a_spec_error_on_its_key(tmp_path):
    (tmp_path / "broken.py").write_text("import no_such_module\n")
    spec = ComparisonSpec.from_dict(
        {"name": "f", "schemes": ["he"], "model": {"factory": "broken.py:build"}, "subset": {"train": 10, "val": 10}},
        base_dir=tmp_path,
    )
    with pytest.raises(SpecError, match=r"^model.factory: .*no_such_module"):
        ModelBuilder(spec, load_spec_data(spec))
