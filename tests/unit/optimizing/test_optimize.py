"""hfmagic.optimizing.optimize(): Ctrl-C keeps the trace so far."""


import pytest


@pytest.mark.slow
def test_ctrl_c_keeps_the_trace_so_far(tiny_clf, monkeypatch):
    from hfmagic.optimizing import api as mod
    from hfmagic.optimizing.search import Search

    folder, frame = tiny_clf

    def interrupted(self):
        raise KeyboardInterrupt

    monkeypatch.setattr(Search, "gate", interrupted)  # Ctrl-C once the screening sweep is done
    from hfmagic.store.db import default_store

    result = mod.optimize(folder, frame, backends=["onnxruntime", "torch"], progress=False)
    assert result.interrupted and result.winner is None and "interrupted" in " ".join(result.notes)
    assert default_store().get(result.run_id)["status"] == "interrupted"
