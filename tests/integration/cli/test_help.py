"""`hfmagic COMMAND -h` on every command, and -h running nothing even with other arguments."""


import pytest

from tests.support.cli import cli


# -- 4. -h on every command ------------------------------------------------------------------------

def cli_commands() -> list[str]:
    from hfmagic.surface.cli import commands

    return list(commands())


@pytest.mark.parametrize("flag", ["-h", "--help"])
def test_every_cli_command_has_help(flag):
    names = cli_commands()
    assert {"load", "export", "benchmark", "evaluate", "runs", "compare", "rerun", "report", "status",
            "demo"} <= set(names)
    for name in names:
        done = cli(name, flag)
        assert done.returncode == 0 and done.stderr == "", (name, done.stderr)
        assert done.stdout.startswith(f"usage: hfmagic {name}"), (name, done.stdout[:200])
        assert "-h, --help" in done.stdout and "options:" in done.stdout


def test_help_runs_nothing_even_with_other_arguments(tmp_path):
    done = cli("report", "no-such-run", "--html", str(tmp_path / "r.html"), "-h")
    assert done.returncode == 0 and done.stdout.startswith("usage: hfmagic report")
    assert not (tmp_path / "r.html").exists()
