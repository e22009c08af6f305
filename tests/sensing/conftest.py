"""Fixtures shared by the SensingAgents tests."""

import numpy as np
import pytest

from polymodal.sensing.imu import Recording
from polymodal.sensing.synthetic import simulate_participant
from polymodal.sensing.windowing import make_windows


@pytest.fixture(scope="module")
def windows():
    arrays, labels = simulate_participant(3, seconds_per_activity=4.0, seed=0)
    return make_windows([Recording("3", arrays, np.asarray(labels))])
