"""`hfmagic load` prints the model's card; bad input is one line."""


from tests.support.cli import cli


def test_cli_load_prints_the_card_and_bad_input_is_one_line(tiny_bert):
    ok = cli("load", str(tiny_bert))
    assert ok.returncode == 0 and "BertForSequenceClassification" in ok.stdout
    bad = cli("load", "/no/such/folder")
    assert bad.returncode == 2 and bad.stderr.strip().count("\n") == 0
    assert bad.stderr.startswith("hfmagic: no folder at /no/such/folder")
    assert "usage: hfmagic COMMAND" in cli("--help").stdout
