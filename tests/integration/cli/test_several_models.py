"""Several models on the command line: evaluated as one result, two folders of one name told apart."""

from __future__ import annotations



from tests.support.cli import cli


def test_several_models_on_the_command_line(two_classifiers, labelled_csv):
    first, second = two_classifiers
    done = cli("evaluate", first, second, "--data", labelled_csv, "--variants", "torch")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[1].split()[:2] == ["model", "variant"]
    models = [line.split()[0] for line in lines[3:5]]
    assert len(set(models)) == 2 and all(line.split()[1] == "torch" for line in lines[3:5]), done.stdout
    bad = cli("evaluate", first, second, "--data", labelled_csv, "--variants", "torch", "--reference", "nobody/torch")
    assert bad.returncode == 2 and bad.stderr.strip().count("\n") == 0 and "nobody/torch" in bad.stderr


def test_two_folders_of_one_name_on_the_command_line_are_told_apart_by_their_parents(two_classifiers,
                                                                                      labelled_csv, tmp_path):
    import shutil

    a, b = tmp_path / "base" / "model", tmp_path / "small" / "model"
    shutil.copytree(two_classifiers[0], a)
    shutil.copytree(two_classifiers[1], b)
    done = cli("evaluate", str(a), str(b), "--data", labelled_csv, "--variants", "torch")
    assert done.returncode == 0, done.stderr
    assert [line.split()[0] for line in done.stdout.splitlines()[3:5]] == ["base_model", "small_model"], done.stdout
