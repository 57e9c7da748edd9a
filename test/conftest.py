import os

import numpy as np
import pytest

os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")

#: Markers of this suite (registered so ``--strict-markers`` accepts them).
MARKERS = {
    "slow": "minutes on two cores (overfit, DDP, torchrun, Ctrl-C of the trainer); CI runs them "
            "(`make test` selects everything), `pytest -m 'not slow'` leaves them out locally",
}


def pytest_configure(config):
    for name, description in MARKERS.items():
        config.addinivalue_line("markers", f"{name}: {description}")


@pytest.fixture
def rng():
    return np.random.default_rng(0)
