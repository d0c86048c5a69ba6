"""The dashboard in a real browser: JupyterLab started headless on 127.0.0.1, Debian's Chromium
driven by Playwright (never `playwright install`). A notebook benchmarks and evaluates a tiny model
through the magics; the test watches the live dashboard fill, then sorts, filters, changes the
baseline and selects a row in the combined one, and checks in Python that the selection arrived.
The standalone HTML export is opened from disk and sorted too. A second test opens a dashboard in
Notebook 7 (served by the same server) with the JupyterLab Dark theme. Screenshots go to
test-artifacts/.
"""

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.support.paths import REPO

pytestmark = pytest.mark.browser

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = REPO / "test-artifacts"
if not CHROMIUM.exists():
    pytest.skip("Debian's chromium is not installed: `make browser` installs it", allow_module_level=True)

from playwright.sync_api import expect  # noqa: E402

expect.set_options(timeout=30_000)  # expect() ignores page.set_default_timeout

SETUP = """\
import json, random, sys
from pathlib import Path
sys.path.insert(0, {repo!r})
import pandas as pd
import hfmagic
from tests.support.tiny import LABELS, make_tiny, sentences
%load_ext hfmagic
folder = make_tiny(Path({work!r}) / "tiny", "bert", "text-classification")
%load_model {{folder}} --name tiny
%export_onnx tiny --levels fp32 --quantize dynamic -q
rng = random.Random(0)
texts = sentences(64, seed=3)
df = pd.DataFrame({{"text": texts, "label": [rng.choice(LABELS) for _ in texts]}})
fast = "--min-time 0.05 --min-runs 5 --warmup 2 --threads 1 --inline"
%benchmark tiny_onnx {{fast}} --batch-sizes 1,2 --seq-lens 16 --name bench
%evaluate tiny_onnx --data df --name ev
dash = hfmagic.Dashboard(bench, ev)
dash
"""

CHECK = """\
from hfmagic.ui.rows import pareto_front, row_id
front = pareto_front([r for r in dash.rows if r["status"] == "ok" and (r["batch_size"], r["seq_len"]) == (1, 16)])
dash.to_html({export!r}, title="tiny report", extra_html=["<section id='extra'>env card</section>"])
# what the text tables say: the benchmark's speed-up against its own baseline, the evaluation's verdicts
bench_table, ev_table = bench.table(), ev.table()
said = {{row_id({{**r, "model": "tiny"}}): cells[[c.key for c in bench_table.columns].index("speedup")]
        for r, cells in zip(bench.rows, bench_table.cells())}}
verdicts = {{r["variant"]: cells[[c.key for c in ev_table.columns].index("gate")]
            for r, cells in zip(ev_table.rows, ev_table.cells())}}
table = dash.table()  # the dashboard's own cells, against the baseline chosen in the browser
shown = {{r["id"]: dict(zip([c.key for c in table.columns], cells)) for r, cells in zip(dash.rows, table.cells())}}
print("STATE" + json.dumps({{"selected": dash.selected, "baseline": dash.baseline, "said": said,
                             "verdicts": verdicts, "shown": shown, "front": front}}))
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args):
    return {**browser_type_launch_args, "executable_path": str(CHROMIUM), "args": [
        "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]}


@pytest.fixture(scope="session")
def browser_context_args(browser_context_args):
    return {**browser_context_args, "viewport": {"width": 1280, "height": 1400}}


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """JupyterLab on 127.0.0.1 with every Jupyter/IPython folder in a temporary one (conftest sets
    the variables); stopped with SIGTERM to its process group so it shuts its kernels down."""
    root = tmp_path_factory.mktemp("lab")
    settings = root / "user-settings"
    notify = settings / "@jupyterlab" / "apputils-extension" / "notification.jupyterlab-settings"
    notify.parent.mkdir(parents=True)
    notify.write_text(json.dumps({"fetchNews": "false", "checkForUpdates": False}))
    port = free_port()
    log = (root / "lab.log").open("w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "jupyterlab", "--no-browser", f"--port={port}", "--ServerApp.ip=127.0.0.1",
         "--ServerApp.token=", "--ServerApp.password=", "--allow-root", f"--ServerApp.root_dir={root}",
         f"--LabApp.user_settings_dir={settings}", f"--LabApp.workspaces_dir={root / 'workspaces'}"],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True, env=os.environ.copy())
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            urllib.request.urlopen(f"{url}/api/status", timeout=2)
            break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"JupyterLab did not start: {(root / 'lab.log').read_text()[-2000:]}")
            time.sleep(0.25)
    yield url, root
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
    log.close()


def write_notebook(path: Path, cells: list[str]) -> None:
    import nbformat

    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in cells])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, path)


def run_cell(page, cell, tries: int = 3) -> None:
    """Run one cell with Ctrl+Enter and make sure it started: under load the first keypress can
    land before the editor has focus, and nothing runs (CI saw a dashboard never drawn in 90 s).
    The cell's prompt reads [*] or [N] once it was sent to the kernel."""
    prompt = cell.locator(".jp-InputPrompt")
    for _ in range(tries):
        cell.locator(".jp-InputArea-editor").click()
        page.keyboard.press("Control+Enter")
        try:
            expect(prompt).to_contain_text(re.compile(r"\[(\*|\d+)\]"), timeout=15_000)
            return
        except AssertionError:
            continue
    raise AssertionError(f"the cell never started after {tries} tries: prompt {prompt.inner_text()!r}")


def column(dash, key) -> list[str]:
    return dash.locator(f'tbody td[data-col="{key}"]').all_inner_texts()


def cells_by_row(dash, key) -> dict[str, str]:
    """Row id -> the text of the row's cell in column ``key``, as the browser shows it."""
    return {tr.get_attribute("data-id"): (tr.locator(f'td[data-col="{key}"]').all_inner_texts() or [""])[0].strip()
            for tr in dash.get_by_test_id("row").all()}


def numbers(texts) -> list[float]:
    return [float(re.sub(r"[^0-9.+-]", "", t)) for t in texts]


def check_sorting(dash) -> None:
    header = dash.get_by_test_id("sort-p50_ms")
    header.click()
    expect(header).to_contain_text("▲")
    up = numbers(column(dash, "p50_ms"))
    assert up == sorted(up) and len(set(up)) > 1
    header.click()
    expect(header).to_contain_text("▼")
    assert numbers(column(dash, "p50_ms")) == sorted(up, reverse=True)


def test_dashboard_in_jupyterlab(lab, page):
    url, root = lab
    export = root / "export.html"
    write_notebook(root / "dash.ipynb", [SETUP.format(repo=str(REPO), work=str(root)),
                                         CHECK.format(export=str(export))])
    ARTIFACTS.mkdir(exist_ok=True)
    page.goto(f"{url}/lab/tree/dash.ipynb")
    expect(page.locator("#jp-main-statusbar")).to_contain_text("| Idle", timeout=60_000)
    cells = page.locator(".jp-Cell")
    # the progress bar can come and go between two polls (the sweep is short): a DOM observer,
    # started before the cell runs, records whether it was ever drawn
    page.evaluate("""() => {
        window.hfmSawProgress = false;
        new MutationObserver(() => {
            if (document.querySelector('[data-testid="hfmagic-dashboard"] [data-testid="progress"]'))
                window.hfmSawProgress = true;
        }).observe(document.body, {childList: true, subtree: true});
    }""")
    run_cell(page, cells.nth(0))

    # live: the benchmark's dashboard shows its progress while the sweep runs, then the final rows
    live = page.get_by_test_id("hfmagic-dashboard").first
    expect(page.get_by_test_id("hfmagic-dashboard")).to_have_count(3, timeout=180_000)
    assert page.evaluate("window.hfmSawProgress"), "the live dashboard never showed its progress"
    expect(live.get_by_test_id("progress")).to_have_count(0)
    expect(live.get_by_test_id("row")).to_have_count(6)  # torch, fp32, int8 x batch 1, 2

    dash = page.get_by_test_id("hfmagic-dashboard").nth(2)  # Dashboard(bench, ev)
    rows = dash.get_by_test_id("row")
    expect(rows).to_have_count(6)
    assert all(t for t in column(dash, "metric")) and "accuracy" in dash.locator("thead").inner_text()

    # the chart: one point per variant/backend at the smallest shape, the Pareto front marked, tooltips
    points = dash.get_by_test_id("scatter").get_by_test_id("point")
    expect(points).to_have_count(3)
    front = dash.locator('[data-testid="point"][data-pareto="true"]')
    drawn_front = sorted(p.get_attribute("data-id") for p in front.all())  # checked against Python below
    # marker AREA proportional to the size on disk: r^2 / size is one constant (above the smallest radius)
    circles = [(float(p.get_attribute("r")), float(p.get_attribute("data-size"))) for p in points.all()]
    areas = [r * r / size for r, size in circles if r > 2.6]
    assert len(areas) >= 2 and max(areas) == pytest.approx(min(areas), rel=0.02), circles
    front.last.hover()  # drawn last, so on top
    expect(dash.get_by_test_id("tooltip")).to_contain_text("p50")
    expect(dash.get_by_test_id("tooltip")).to_contain_text("model tiny")
    expect(dash.get_by_test_id("bars").get_by_test_id("bar")).to_have_count(6)

    check_sorting(dash)

    # the model: a column first, a colour legend, a filter (every row here is the one model's)
    assert [t.strip() for t in column(dash, "model")] == ["tiny"] * 6
    assert dash.locator("thead th").nth(1).inner_text().strip() == "model"
    expect(dash.get_by_test_id("model-legend")).to_have_text(re.compile(r"^\s*tiny\s*$"))
    dash.get_by_test_id("filter-model").select_option("tiny")
    expect(rows).to_have_count(6)
    dash.get_by_test_id("filter-model").select_option("")

    # filters: backend, level, shape
    dash.get_by_test_id("filter-backend").select_option("onnxruntime")
    expect(rows).to_have_count(4)
    dash.get_by_test_id("filter-backend").select_option("")
    dash.get_by_test_id("filter-level").select_option("int8")
    expect(rows).to_have_count(2)
    dash.get_by_test_id("filter-level").select_option("")
    dash.get_by_test_id("filter-shape").select_option("2x16")
    expect(rows).to_have_count(3)
    expect(dash.get_by_test_id("scatter").locator("text.hfm-axis").first).to_contain_text("2 × 16")
    dash.get_by_test_id("filter-shape").select_option("")
    expect(rows).to_have_count(6)

    # against the sweep's own baseline, the speed-ups as the benchmark measured them (checked against
    # its text table below, interval or "not trustworthy" included); the gate verdicts and intervals
    sweep_speedups = cells_by_row(dash, "speedup")
    gates = {tr.get_attribute("data-id"): tr.locator('td[data-col="gate"]').inner_text() for tr in rows.all()}
    assert all(t for t in column(dash, "metric_ci")) and any(t in ("pass", "fail") for t in gates.values())

    # the baseline: speed-ups computed in Python against fp32, from the same rounds
    dash.get_by_test_id("baseline").select_option("tiny/fp32/onnxruntime")
    fp32 = dash.locator('tr[data-id="tiny/fp32/onnxruntime/1x16"] td[data-col="speedup"]')
    expect(fp32).to_have_text("1.00x [1.00, 1.00]")

    # select a row: it must arrive in Python
    dash.locator('tr[data-id="tiny/int8/onnxruntime/1x16"] [data-testid="select-row"]').click()
    expect(dash.locator('tr[data-id="tiny/int8/onnxruntime/1x16"]')).to_have_class(re.compile("hfm-selected"))
    page.screenshot(path=str(ARTIFACTS / "dashboard-lab.png"), full_page=True)

    run_cell(page, cells.nth(1))
    out = cells.nth(1).locator(".jp-OutputArea-output")
    expect(out).to_contain_text("STATE", timeout=60_000)
    state = json.loads(out.inner_text().split("STATE", 1)[1].strip())
    assert state["selected"] == ["tiny/int8/onnxruntime/1x16"] and state["baseline"] == "tiny/fp32/onnxruntime"
    # the dashboard shows the figures the text tables show: the benchmark's speed-ups with their
    # intervals or trust, the evaluation's verdicts, and against another baseline Python's own cells
    assert sweep_speedups == state["said"]
    assert all(gates[i] == state["verdicts"][i.split("/")[1]] for i in gates)
    for key in [c for c in next(iter(state["shown"].values())) if c != "model"]:
        assert cells_by_row(dash, key) == {i: cells[key] for i, cells in state["shown"].items()}, key
    assert drawn_front == sorted(state["front"]) and drawn_front

    # the standalone export: renders offline from the file, sorts, keeps the extra section
    page.goto(export.as_uri())
    standalone = page.get_by_test_id("hfmagic-dashboard")
    expect(standalone.get_by_test_id("row")).to_have_count(6)
    expect(standalone.get_by_test_id("point")).to_have_count(3)
    expect(page.locator("#extra")).to_have_text("env card")
    check_sorting(standalone)
    page.screenshot(path=str(ARTIFACTS / "dashboard-export.png"), full_page=True)
    page.emulate_media(color_scheme="dark")
    page.screenshot(path=str(ARTIFACTS / "dashboard-export-dark.png"), full_page=True)


NOTEBOOK7 = """\
import hfmagic
from hfmagic.benchmarking.result import ROW_KEYS
def bench(variant, backend, p50):
    return {**dict.fromkeys(ROW_KEYS), "variant": variant, "backend": backend, "batch_size": 1,
            "seq_len": 16, "status": "ok", "p50_ms": p50, "samples_per_s": 1000 / p50}
def ev(variant, acc):
    return {"variant": variant, "status": "ok", "accuracy": acc, "accuracy_low": acc - 0.02,
            "accuracy_high": acc + 0.02, "pct_of_reference": 100 * acc / 0.9, "gate": "pass"}
dash = hfmagic.Dashboard([bench("torch", "torch", 20.0), bench("fp32", "onnxruntime", 15.0),
                          bench("int8", "onnxruntime", 9.0)],
                         [ev("torch", 0.9), ev("fp32", 0.9), ev("int8", 0.85)])
display(dash)
# a decoder LLM's rows: p50_ms is TPOT; int4 decodes fastest, fp32 has the shortest TTFT
def gen(variant, tpot, ttft):
    return {**bench(variant, "onnxruntime" if variant != "torch" else "torch", tpot), "new_tokens": 8,
            "tpot_p50_ms": tpot, "ttft_p50_ms": ttft, "decode_tokens_per_s": 1000 / tpot}
def ppl(variant, value):
    return {"variant": variant, "status": "ok", "perplexity": value, "perplexity_low": value - 1,
            "perplexity_high": value + 1, "pct_of_reference": 100 * value / 26.7, "gate": "pass"}
llm = hfmagic.Dashboard([gen("torch", 90.0, 650.0), gen("fp32", 47.0, 600.0), gen("int4", 30.0, 700.0)],
                        [ppl("torch", 26.7), ppl("fp32", 26.7), ppl("int4", 31.1)])
llm.metric_lower = True  # perplexity: lower is better (an EvaluationResult says so itself)
display(llm)
# an image classifier's rows (batch x pixels per side) and a speech model's (batch x seconds, WER)
def img(variant, p50):
    return {**bench(variant, "onnxruntime" if variant != "torch" else "torch", p50), "batch_size": 8,
            "seq_len": None, "image_size": 32}
vision = hfmagic.Dashboard([img("torch", 4.7), img("fp32", 2.0), img("int8", 2.5)],
                           [ev("torch", 0.975), ev("fp32", 0.975), ev("int8", 0.978)])
display(vision)
def clip(variant, p50):
    return {**bench(variant, "onnxruntime" if variant != "torch" else "torch", p50), "seq_len": None,
            "audio_seconds": 5, "rtf": p50 / 5000}
def wer(variant, value):
    return {"variant": variant, "status": "ok", "wer": value, "wer_low": value - 0.02, "wer_high": value + 0.02,
            "pct_of_reference": 100 * value / 0.2, "gate": "pass"}
speech = hfmagic.Dashboard([clip("torch", 148.0), clip("fp32", 137.0), clip("int8", 120.0)],
                           [wer("torch", 0.2), wer("fp32", 0.2), wer("int8", 0.21)])
speech.metric_lower = True
display(speech)
"""


def luminance(css_color: str) -> float:
    r, g, b = (int(v) for v in re.findall(r"\d+", css_color)[:3])
    return (0.2126 * r + 0.7152 * g + 0.0722 * b) / 255


def test_dashboard_in_notebook_7_with_the_dark_theme(lab, page):
    """The same widget in Notebook 7's page, in JupyterLab Dark: it draws, follows the theme, and a
    selection reaches Python."""
    url, root = lab
    write_notebook(root / "nb7.ipynb", [NOTEBOOK7, 'print("SELECTED", dash.selected)'])
    theme = root / "user-settings" / "@jupyterlab" / "apputils-extension" / "themes.jupyterlab-settings"
    theme.write_text(json.dumps({"theme": "JupyterLab Dark"}))  # read when the page loads
    try:
        page.goto(f"{url}/notebooks/nb7.ipynb")
        notebook_7_dark(page)
    finally:
        theme.unlink()


def llm_dashboard(dash):
    """TPOT, TTFT or decode tokens/s on the chart's x axis (a selector), perplexity on y, lower better:
    on TPOT the front is int4 and fp32 (int4 decodes fastest, fp32 keeps torch's perplexity); on TTFT,
    fp32 alone (it has both the shortest prefill and the lowest perplexity); on tokens/s, higher
    better, TPOT's front again."""
    def front():
        return sorted(p.get_attribute("data-id") for p in dash.locator('[data-testid="point"][data-pareto="true"]').all())

    expect(dash.get_by_test_id("point")).to_have_count(3)
    assert front() == ["fp32/onnxruntime/1x16+8", "int4/onnxruntime/1x16+8"]
    expect(dash.get_by_test_id("scatter")).to_contain_text("TPOT p50 ms (batch × prompt 1 × 16 + 8 new)")  # the records' titles
    dash.get_by_test_id("x-axis").select_option("ttft_p50_ms")
    expect(dash.get_by_test_id("scatter")).to_contain_text("TTFT p50 ms (batch × prompt 1 × 16 + 8 new)")
    assert front() == ["fp32/onnxruntime/1x16+8"]
    dash.get_by_test_id("x-axis").select_option("decode_tokens_per_s")
    expect(dash.get_by_test_id("scatter")).to_contain_text("decode tok/s (batch × prompt 1 × 16 + 8 new)")
    assert front() == ["fp32/onnxruntime/1x16+8", "int4/onnxruntime/1x16+8"]


def other_axes(vision, speech):
    """A shape's second axis is the task's: the image dashboard's rows and table are batch x pixels,
    the speech dashboard's batch x seconds, with WER lower-better on its chart."""
    expect(vision.get_by_test_id("row")).to_have_count(3)
    expect(vision.locator("th")).to_contain_text(["image px"])
    assert vision.locator('tr[data-id="fp32/onnxruntime/8x32"]').count() == 1
    front = sorted(p.get_attribute("data-id") for p in vision.locator('[data-testid="point"][data-pareto="true"]').all())
    assert front == ["fp32/onnxruntime/8x32", "int8/onnxruntime/8x32"]  # fastest; most accurate
    expect(speech.locator("th")).to_contain_text(["audio s"])
    assert speech.locator("th", has_text="RTF").count() == 1 and vision.locator("th", has_text="RTF").count() == 0
    front = sorted(p.get_attribute("data-id") for p in speech.locator('[data-testid="point"][data-pareto="true"]').all())
    assert front == ["fp32/onnxruntime/1x5", "int8/onnxruntime/1x5"]  # lowest WER; fastest


def notebook_7_dark(page):
    expect(page.locator("body")).to_have_attribute("data-jp-theme-light", "false", timeout=60_000)
    cells = page.locator(".jp-Cell")
    expect(cells).to_have_count(2, timeout=60_000)
    page.wait_for_function("document.querySelector('.jp-Notebook') !== null")
    run_cell(page, cells.nth(0))
    expect(page.get_by_test_id("hfmagic-dashboard")).to_have_count(4, timeout=120_000)
    dash = page.get_by_test_id("hfmagic-dashboard").first
    expect(dash.get_by_test_id("row")).to_have_count(3)
    expect(dash.get_by_test_id("x-axis")).to_have_count(0)  # an encoder's chart has one latency
    llm_dashboard(page.get_by_test_id("hfmagic-dashboard").nth(1))
    other_axes(page.get_by_test_id("hfmagic-dashboard").nth(2), page.get_by_test_id("hfmagic-dashboard").nth(3))
    # int8 is fastest, torch/fp32 tie on accuracy and fp32 is faster: the front is int8 and fp32
    front = dash.locator('[data-testid="point"][data-pareto="true"]')
    expect(front).to_have_count(2)
    assert sorted(p.get_attribute("data-id") for p in front.all()) == ["fp32/onnxruntime/1x16",
                                                                        "int8/onnxruntime/1x16"]
    text = dash.locator("td").first.evaluate("e => getComputedStyle(e).color")
    assert luminance(text) > 0.6, f"dark theme, yet the table's text is {text}"
    dash.locator('tr[data-id="int8/onnxruntime/1x16"] [data-testid="select-row"]').click()
    run_cell(page, cells.nth(1))
    expect(cells.nth(1).locator(".jp-OutputArea-output")).to_contain_text(
        "SELECTED ['int8/onnxruntime/1x16']", timeout=60_000)
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "dashboard-notebook7-dark.png"), full_page=True)


def test_load_test_curves_in_the_browser(page, tmp_path):
    """A load test's page (LoadTestView.to_html) in Chromium: one curve per configuration with a
    point per rate at Python's achieved rate and p99, the SLO drawn, each configuration's highest
    rate inside it ringed, the accuracy gate in the legend, and the table's cells the text table's.
    The rows come from the load test's own figures() over request timings (no server here: the
    served path is tests/integration/cluster)."""
    from hfmagic.serving.result import LoadTestResult, figures

    def timings(rate, service_ms):  # one request per 1/rate s, served one at a time in service_ms
        free, out = 0.0, []
        for i in range(int(rate * 4)):
            intended = i / rate
            free = max(free, intended) + service_ms / 1000
            out.append({"intended": intended, "sent": intended, "done": free, "start": 0.0, "server_ms": service_ms})
        return out

    gates = {"int8-r2": "fail", "fp32-r1": "reference"}  # what a load test's rows carry from %evaluate
    rows = [{"config": name, "variant": name, **figures(timings(rate, ms), rate, 4.0, 100.0, 0.1, 4.0),
             "gate": gates[name]} for name, ms in (("int8-r2", 20), ("fp32-r1", 70)) for rate in (5, 10, 20)]
    result = LoadTestResult(rows, 100.0, 4.0, "constant")
    result.accuracy = {"int8-r2": {"gate": "fail", "pct_of_reference": 97.5, "metric": "accuracy", "value": 0.9,
                                   "accuracy_from": "evaluate run x"},
                       "fp32-r1": {"gate": "reference", "pct_of_reference": 100.0, "metric": "accuracy",
                                   "value": 0.92, "accuracy_from": "evaluate run x"}}
    view = result.dashboard()
    assert result.best() == {"int8-r2": 20, "fp32-r1": 10}, rows
    out = view.to_html(tmp_path / "load.html")
    page.goto(out.as_uri())
    root = page.get_by_test_id("hfmagic-loadtest")
    expect(root.get_by_test_id("curve")).to_have_count(2)
    expect(root.get_by_test_id("rate-point")).to_have_count(6)
    expect(root.get_by_test_id("slo-line")).to_have_count(1)
    for config, best in result.best().items():
        curve = root.locator(f"[data-testid=curve][data-config='{config}']")
        expect(curve).to_have_attribute("data-best", str(best))
        ringed = curve.locator(".hfm-best")
        expect(ringed).to_have_count(1)
        assert ringed.get_attribute("data-rate") == str(best)
        tips = [t.text_content() for t in curve.locator("title").all()]
        expected = [r for r in rows if r["config"] == config]
        for tip, row in zip(tips, expected):  # each point says Python's figures, as the table writes them
            assert f"achieved {row['achieved_rps']:.1f}/s" in tip and f"p99 {row['p99_ms']:.1f} ms" in tip, tip
    expect(root.locator(".hfm-clipped")).to_have_count(1)  # fp32-r1 at 20/s: p99 1.6 s, past 4 x the SLO
    expect(root.get_by_test_id("legend")).to_contain_text("int8-r2: 20/s inside (fails the accuracy gate)")
    cells = [[c.text_content() for c in r.locator("td").all()] for r in root.get_by_test_id("loadtest-table").locator("tbody tr").all()]
    assert cells == result.table().cells()
    expect(root.get_by_test_id("notes")).to_contain_text("but it fails the accuracy gate (97.50% of the reference); "
                                                         "the most that passes: fp32-r1 at 10/s")
    page.screenshot(path=str(ARTIFACTS / "loadtest.png"), full_page=True)
