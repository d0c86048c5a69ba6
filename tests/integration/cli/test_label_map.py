"""--label-map on the command line, from a JSON file and in Python: labels that are strings of digits scored."""

import json


from tests.support.cli import cli
from tests.support.tiny import LABELS


def test_label_map_on_the_command_line_from_a_json_file_and_in_python(tiny_bert, digits, tmp_path):
    data = tmp_path / "digits.parquet"
    digits.to_parquet(data)  # parquet keeps the labels as strings (CSV and JSON would read numbers)
    done = cli("evaluate", tiny_bert, "--data", data, "--variants", "torch")
    assert done.returncode == 2 and "look like class ids" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
    mapping = tmp_path / "labels.json"
    mapping.write_text(json.dumps(dict(zip("012", LABELS))))
    done = cli("evaluate", tiny_bert, "--data", data, "--variants", "torch", "--label-map", mapping)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("evaluation of") and "\ntorch " in done.stdout

    import hfmagic

    result = hfmagic.evaluate(hfmagic.load_model(tiny_bert), digits, variants=["torch"], label_map="ids",
                              progress=False)
    by_file = hfmagic.evaluate(hfmagic.load_model(tiny_bert), digits, variants=["torch"], label_map=mapping,
                               progress=False)
    assert result.rows[0]["accuracy"] == by_file.rows[0]["accuracy"]
