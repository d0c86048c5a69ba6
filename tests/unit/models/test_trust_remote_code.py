"""Loading a model never runs the code a folder carries (trust_remote_code stays off)."""

import json

import pytest


def test_trust_remote_code_stays_off(tmp_path, tiny_bert):
    import shutil

    from hfmagic.core.errors import UsageProblem
    from hfmagic.models.handle import load_model

    folder = tmp_path / "remote"
    shutil.copytree(tiny_bert, folder)
    config = json.loads((folder / "config.json").read_text())
    config["auto_map"] = {"AutoModel": "modeling_evil.EvilModel"}
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(UsageProblem, match="--trust-remote-code"):
        load_model(folder)
    assert load_model(folder, trust_remote_code=True).trust_remote_code
