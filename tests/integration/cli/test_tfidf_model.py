"""The classical baseline on the command line: `hfmagic load tfidf --data D` trains it, then evaluate."""

import subprocess
import sys


from tests.support.tiny import labelled


def test_the_command_line_trains_and_evaluates_it(tmp_path):
    csv = tmp_path / "texts.csv"
    labelled(120, seed=1).to_csv(csv, index=False)
    done = subprocess.run([sys.executable, "-m", "hfmagic", "load", "tfidf", "--data", str(csv)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "TfidfLogisticRegression" in done.stdout and "vocabulary" in done.stdout
