"""A teacher fitted for one epoch on the cycle shop, shared by the soft-label and distillation tests."""

import pytest

from tests.fixtures.cycle import cycle_log, tiny_cfg
from training.data.split import leave_last_out
from training.teacher.fit import fit_teacher


@pytest.fixture
def small_teacher(tmp_path):
    log = cycle_log()
    split = leave_last_out(log)
    cfg = tiny_cfg()
    cfg.teacher.epochs = 1
    return fit_teacher(split, log.catalog, cfg, tmp_path, progress=False).model, split, cfg
