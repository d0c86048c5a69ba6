"""An interleaved worker's onnxruntime threads spin within its runs, as a default session's do, and
stop the moment a run ends: no wake-up per operator in its latency, no CPU taken while it waits."""

from pathlib import Path

import pytest


def parked(pid: int) -> int:
    """How often the process's threads other than its main one went to sleep (Linux's voluntary
    context switches): an onnxruntime pool thread that does not spin sleeps at every operator."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        if int(task.name) == pid:
            continue
        for line in (task / "status").read_text().splitlines():
            if line.startswith("voluntary_ctxt_switches:"):
                total += int(line.split()[1])
    return total


@pytest.mark.skipif(not Path("/proc/self/task").exists(), reason="reads Linux's /proc")
def test_an_interleaved_onnxruntime_worker_spins_within_its_runs(tiny_bert):
    from hfmagic.benchmarking.sweep import Sweep
    from hfmagic.benchmarking.plan import Job
    from hfmagic.export.api import export_onnx
    from hfmagic.models.handle import load_model
    from hfmagic.measure.worker import WorkerProcess

    variants = export_onnx(load_model(tiny_bert), levels=["fp32"], quantize="none", progress=False)
    sweep = Sweep([variants.model], [], None, {"threads": 2, "warmup": 5, "min_runs": 3, "min_time": 0.05},
                  None, None, False, 60, None, {})
    job = Job(variants["fp32"], "onnxruntime", [(8, 128)])
    worker = WorkerProcess({**sweep.job_spec(job, job.shapes), "serve": True})  # as the rounds start one
    try:
        assert worker.next(300)["type"] == "ready"
        counts = []
        for round_no, runs in ((1, 5), (2, 50)):  # the first slice makes the inputs and warms up
            before = parked(worker.proc.pid)
            worker.send({"cmd": "slice", "shape": [8, 128], "runs": runs, "round": round_no})
            assert "samples_ms" in worker.next(60)
            counts.append(parked(worker.proc.pid) - before)
        # a pool thread may park once a run, as the run ends (and a busy machine adds a few more); one
        # that parks at its operators (allow_spinning = 0) did so about 25 times a run here
        assert counts[1] < 3 * 50, f"the worker's pool threads slept {counts[1]} times in 50 runs"
    finally:
        worker.close()
