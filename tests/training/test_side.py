"""training/schedule/side.py: the scratch student and the ALS peer in a second process beside the teacher.

The pipeline on the tiny shop with the side process and without it must publish the same models and
the same figures (only the wall time may change); the side process is used only where a core is spare;
an error in it reaches the caller; leaving early stops it.
"""

from __future__ import annotations

import multiprocessing
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import pytest
import torch

from training.config import PipelineConfig
from training.config_file import load_config
from training.evaluate.peers import implicit_missing
from training.pipeline import PipelineResult, run_pipeline
from training.schedule.side import SideStages, side_process_allowed
from training.student.model import load_student

TINY = Path(__file__).resolve().parents[2] / "configs" / "tiny.toml"


def _run(root: Path, side: bool) -> tuple[PipelineConfig, PipelineResult]:
    cfg = load_config(
        TINY,
        [f"models_dir={root / 'models'}", f"work_dir={root / 'work'}", f"side_process={str(side).lower()}"],
    )
    return cfg, run_pipeline(cfg, progress=False)


@pytest.fixture(scope="module")
def both(tmp_path_factory: pytest.TempPathFactory):
    if not side_process_allowed(load_config(TINY, ["side_process=true"])):
        pytest.skip("fewer than 2 cores: the pipeline never starts a side process here")
    return _run(tmp_path_factory.mktemp("serial"), False), _run(tmp_path_factory.mktemp("side"), True)


def _state(cfg: PipelineConfig, name: str) -> dict[str, torch.Tensor]:
    return load_student(Path(cfg.work_dir) / f"{name}.pt").state_dict()


def test_side_process_trains_the_same_scratch_student_and_publishes_the_same_figures(both) -> None:
    (serial_cfg, serial), (side_cfg, side) = both
    assert "scratch_wait" in side.seconds and "scratch_wait" not in serial.seconds  # it did run beside
    a, b = _state(serial_cfg, "scratch"), _state(side_cfg, "scratch")  # trained in the worker: bit for bit
    assert a.keys() == b.keys() and all(torch.equal(a[key], b[key]) for key in a)
    # Its soft labels are computed half in each process, and they are the same to the bit: one
    # fresh-clone CI run once saw the student differ in the 4th decimal, before `SideStages.submit`
    # pickled in the caller's thread (the race its docstring tells).
    a, b = _state(serial_cfg, "student"), _state(side_cfg, "student")
    assert a.keys() == b.keys() and all(torch.equal(a[key], b[key]) for key in a)
    assert serial.metrics["test"] == side.metrics["test"]


@pytest.mark.skipif(implicit_missing() is not None, reason="implicit (the ALS peer) is not installed")
def test_side_process_tunes_the_same_als_peer(both) -> None:
    (_, serial), (_, side) = both
    assert side.metrics["peers"]["als"]["chosen"] == serial.metrics["peers"]["als"]["chosen"]
    assert side.metrics["test"]["als"] == serial.metrics["test"]["als"]


def test_side_process_only_where_a_core_is_spare() -> None:
    cfg = PipelineConfig.model_validate({"threads": 1, "device": "cpu"})
    assert side_process_allowed(cfg, cores=2)
    assert not side_process_allowed(cfg, cores=1)  # one core: the two would share it
    assert not side_process_allowed(cfg.model_copy(update={"threads": 2}), cores=3)
    assert not side_process_allowed(cfg.model_copy(update={"threads": None}), cores=16)  # torch takes all
    assert not side_process_allowed(cfg.model_copy(update={"side_process": False}), cores=16)


def _fails() -> None:
    raise ValueError("side stage failed")


def test_an_error_in_the_side_process_reaches_the_pipeline() -> None:
    executor = ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn"))
    with SideStages(executor) as side:
        side.scratch = executor.submit(_fails)
        with pytest.raises(ValueError, match="side stage failed"):
            side.scratch_fit()


def test_leaving_early_stops_the_side_process() -> None:
    executor = ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn"))
    with pytest.raises(KeyboardInterrupt), SideStages(executor) as side:
        side.scratch = executor.submit(time.sleep, 600)
        while not side.scratch.running():
            time.sleep(0.05)
        processes = list(executor._processes.values())
        raise KeyboardInterrupt  # Ctrl-C in the teacher's stage
    assert processes and not any(p.is_alive() for p in processes)


def test_an_imported_teacher_stays_in_the_main_process_and_the_rest_goes_beside(tmp_path: Path) -> None:
    """An ONNX teacher holds an onnxruntime session, which does not pickle: its soft labels and its
    ranking stay in the main process; the scratch student still trains beside it."""
    from tests.fixtures import own_teacher
    from tests.fixtures.imported_teacher import tiny_cfg
    from training.pipeline import load_data
    from training.schedule.side import travels

    cfg = tiny_cfg(tmp_path / "base")
    data, split = load_data(cfg)
    model = own_teacher.train_sasrec(
        data.user_ids[split.train_users], data.catalog.item_ids[split.train_items], epochs=1
    )
    spec = own_teacher.export_onnx(model, tmp_path / "onnx")
    imported = tiny_cfg(
        tmp_path / "run", f"teacher.source=onnx:{spec}", "side_process=true",
        "distill.soft_labels_from=teacher+scratch",
    )  # fmt: skip
    if not side_process_allowed(imported):
        pytest.skip("fewer than 2 cores: the pipeline never starts a side process here")
    result = run_pipeline(imported, progress=False)
    assert "scratch_wait" in result.seconds  # the scratch student trained beside
    assert {"teacher", "student", "scratch", "teacher+scratch"} <= set(result.metrics["test"])
    assert not travels(object())  # anything but our own teacher stays in the main process


def _blas_threads() -> list[int]:
    import threadpoolctl

    return [pool["num_threads"] for pool in threadpoolctl.threadpool_info() if pool["user_api"] == "blas"]


def _sum(t: torch.Tensor) -> float:
    return float(t.sum())


def test_a_call_is_pickled_before_submit_returns_so_its_tensors_move_to_shared_memory_then() -> None:
    """Pickling a tensor for the worker moves its storage into shared memory. Done later by the
    executor's feeder thread, that move raced with the main process reading the same tensor (the
    teacher scoring its own share of the soft labels): it must be over when `submit` returns."""
    from training.schedule.side import _worker_init

    cfg = PipelineConfig.model_validate({"threads": 1, "device": "cpu"})
    executor = ProcessPoolExecutor(
        max_workers=1, mp_context=multiprocessing.get_context("spawn"), initializer=_worker_init,
        initargs=(30, cfg),
    )  # fmt: skip
    weights = torch.arange(1000, dtype=torch.float32)
    with SideStages(executor, threads=1) as side:
        future = side.submit(_sum, weights)
        assert weights.is_shared()  # moved here, in this thread, before anything else reads it
        assert future.result() == float(weights.sum())


def test_the_worker_and_the_main_process_keep_numpy_blas_to_threads_while_the_side_runs() -> None:
    """OpenBLAS takes every core by default: the ALS peer's scoring in the side process slowed the
    teacher's epochs by a third on Beauty (21 s to 29-32 s) until both kept to `threads`."""
    from training.schedule.side import _worker_init

    cfg = PipelineConfig.model_validate({"threads": 1, "device": "cpu"})
    executor = ProcessPoolExecutor(
        max_workers=1, mp_context=multiprocessing.get_context("spawn"), initializer=_worker_init,
        initargs=(30, cfg),
    )  # fmt: skip
    before = _blas_threads()
    with SideStages(executor, threads=1) as side:
        assert set(side.submit(_blas_threads).result()) <= {1}
        assert set(_blas_threads()) <= {1}
    assert _blas_threads() == before  # restored once the side process is done


def test_a_warm_start_sends_the_version_to_the_side_process_and_trains_the_same_scratch_student(both) -> None:
    """`recdistill retrain` on a 2-core machine: the scratch student starts from the served version's
    in the side process exactly as it does in one process. Both start from the same version, so the
    test is about the warm start alone (this test caught the pickling race `SideStages.submit` tells)."""
    (serial_cfg, serial), (side_cfg, _) = both
    runs = {}
    for name, cfg, flag in (("serial", serial_cfg, "false"), ("side", side_cfg, "true")):
        warm_cfg = load_config(
            TINY, [f"models_dir={serial_cfg.models_dir}", f"work_dir={Path(cfg.work_dir).parent / 'warm'}",
                   f"side_process={flag}", f"warm_start={serial.version_dir.name}"],
        )  # fmt: skip
        runs[name] = (warm_cfg, run_pipeline(warm_cfg, progress=False))
    assert "scratch_wait" in runs["side"][1].seconds
    assert runs["side"][1].manifest.warm_start_from == serial.version_dir.name
    for name in ("scratch", "student"):
        a, b = _state(runs["serial"][0], name), _state(runs["side"][0], name)
        assert all(torch.equal(a[key], b[key]) for key in a), name
    assert runs["serial"][1].metrics["test"] == runs["side"][1].metrics["test"]
