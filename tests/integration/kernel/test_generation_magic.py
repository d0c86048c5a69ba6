"""Decoder LLMs (the text-generation task) through a real InteractiveShell: prefill and decode timed,
perplexity with a gate and greedy agreement, int4 recipes, chat templates, bad input in one line."""

import subprocess
import sys

import numpy as np
import pytest
from tests.support.fast import DECODER_TIMING as FAST


def test_benchmark_measures_prefill_and_decode_and_they_add_up(shell, llama_variants):
    shell.user_ns["llama_onnx"] = llama_variants
    result = shell.run_line_magic("benchmark", f"llama_onnx --variants torch,int4,genai-fp32 --prompt-lens 16 "
                                               f"--new-tokens 8 --batch-sizes 1,2 --no-widget -o {FAST}")
    rows = result.rows  # one variant per backend: torch's loop, optimum's over onnxruntime, onnxruntime-genai's
    assert {(r["variant"], r["backend"]) for r in rows} == {
        ("torch", "torch"), ("int4", "onnxruntime"), ("genai-fp32", "onnxruntime-genai")} and len(rows) == 6
    for row in rows:
        assert row["status"] == "ok" and row["new_tokens"] == 8 and row["seq_len"] == 16
        assert row["tpot_p50_ms"] == row["p50_ms"] and row["ttft_p50_ms"] > 0
        assert len(row["itl_samples_ms"]) == 7 * row["runs"]  # every gap after the first token, every run
        # TTFT + TPOT x (new tokens - 1) is the generation's own end-to-end time, run by run, less what
        # generate() does after the last token (returning the sequences: a fixed fraction of a ms)
        rebuilt, gen = np.array(row["ttft_samples_ms"]) + np.array(row["samples_ms"]) * 7, np.array(row["gen_samples_ms"])
        assert np.all(rebuilt <= gen) and np.median(gen - rebuilt) < 0.05 * np.median(gen) + 0.5, (rebuilt, gen)
        assert row["decode_tokens_per_s"] == pytest.approx(row["batch_size"] * 1000 / row["tpot_p50_ms"])
    table = str(result)
    assert "TTFT p50 ms" in table and "TPOT speed-up" in table and "prompt" in table


def test_several_new_token_counts_are_one_sweep_each_and_one_result(shell, llama_variants):
    """--new-tokens 4,8: each count is its own sweep (speed-ups pair rows of one sweep), one result
    whose rows, ids, dashboard shapes and stored keys tell the counts apart."""
    from hfmagic.ui.rows import row_id
    from hfmagic.ui.widget import Dashboard

    shell.user_ns["llama_onnx"] = llama_variants
    result = shell.run_line_magic("benchmark", f"llama_onnx --variants torch,genai-fp32 --prompt-lens 16 "
                                               f"--new-tokens 8,4 --batch-sizes 1 --no-widget -o {FAST}")
    rows = result.rows
    assert [(r["new_tokens"], r["variant"]) for r in rows] == [(4, "torch"), (4, "genai-fp32"), (8, "torch"),
                                                               (8, "genai-fp32")]
    for row in rows:
        assert row["status"] == "ok" and len(row["itl_samples_ms"]) == (row["new_tokens"] - 1) * row["runs"]
        assert row["speedup"] is not None  # against torch at its own count
    assert result.params["new_tokens"] == [4, 8]
    assert len({row_id({**r, "model": "m"}) for r in rows}) == 4 and "1x16+4" in str(result)
    dash = Dashboard(result)
    assert len(dash.rows) == 4 and {r["shape"] for r in dash.rows} == {"1x16+4", "1x16+8"}
    base = next(iter(dash.speedups))
    assert all(cell["value"] is not None for cell in dash.speedups[base].values())  # each paired with its own count
    assert not any(n.startswith("4 new tokens:") for n in result.notes if "threads" in n)  # shared notes said once


def test_evaluate_gives_perplexity_with_a_gate_and_greedy_agreement(shell, llama_variants):
    shell.user_ns["llama_onnx"] = llama_variants
    result = shell.run_line_magic("evaluate", "llama_onnx --max-tokens 512 --no-widget -o")
    assert any(n.startswith("perplexity over 512 tokens") for n in result.notes), result.notes
    rows = {r["variant"]: r for r in result.rows}
    torch_ppl = rows["torch"]["perplexity"]
    assert 1 < torch_ppl < 1000 and rows["torch"]["perplexity_low"] < torch_ppl < rows["torch"]["perplexity_high"]
    assert rows["fp32"]["perplexity"] == pytest.approx(torch_ppl, rel=1e-4)  # the same function
    assert rows["genai-fp32"]["perplexity"] == pytest.approx(torch_ppl, rel=1e-4)  # onnxruntime-genai's too
    for name in ("fp32", "int8-wo", "int4", "genai-fp32", "genai-int8-wo", "genai-int4"):
        assert rows[name]["gate"] == ("pass" if rows[name]["pct_of_reference"] <= 101 else "fail")
        assert 0 <= rows[name]["agreement"] <= 1 and 0 <= rows[name]["first_divergence"] <= 16
    assert rows["fp32"]["agreement"] == 1.0 and rows["fp32"]["token_agreement"] == 1.0
    for name in ("int8-wo", "genai-int8-wo"):  # 8-bit weights: inside the gate
        assert rows[name]["perplexity"] == pytest.approx(torch_ppl, rel=0.01), name
    assert "gate (101%)" in str(result) and "bbc" in result.data_source
    assert list(result.flips.columns) == ["variant", "row", "prompt", "reference", "prediction", "first_divergence"]
    from hfmagic.ui.widget import Dashboard

    dash = Dashboard(result)  # perplexity: the dashboard's Pareto front takes the lowest
    assert dash.metric_lower and any(c["title"] == "perplexity" for c in dash.columns)


def test_bad_generation_input_is_one_line(shell, llama_variants, tiny_bert, tmp_path, capsys):
    shell.user_ns["llama_onnx"] = llama_variants
    cases = {
        "llama_onnx --new-tokens 0": "new-token counts must be positive",
        "llama_onnx --new-tokens 8,1": "--new-tokens must be 2 or more",
        "llama_onnx --new-tokens 8,": "item 2 of 2 is empty",
        "llama_onnx --prompt-lens 500 --new-tokens 64": "context of 512 tokens; use --prompt-lens up to 448",
        f"{tiny_bert} --new-tokens 8": "--new-tokens is for text-generation models",
    }
    from IPython.core.error import UsageError

    for line, expected in cases.items():
        res = shell.run_cell(f"%benchmark {line} --no-widget {FAST}", store_history=False)
        said = capsys.readouterr()
        assert isinstance(res.error_in_exec, UsageError) and "Traceback" not in said.out + said.err, said
        message = str(res.error_in_exec)
        assert "\n" not in message and expected in message, (line, message)
    junk = tmp_path / "broken.gguf"
    junk.write_bytes(b"GGUF" + b"\0" * 64)
    cli = subprocess.run([sys.executable, "-m", "hfmagic", "load", str(junk)], capture_output=True, text=True,
                         timeout=120)
    assert cli.returncode != 0 and len(cli.stderr.strip().splitlines()) == 1, cli.stderr
    assert "cannot dequantise broken.gguf" in cli.stderr


def test_int4_is_rtn_by_default_and_hqq_on_request(shell, llama, llama_variants):
    """RTN's int4 is symmetric (no zero points) with int8 compute (accuracy level 4); --int4-method
    hqq carries zero points (asymmetric, fitted per block); each is cached apart and says which."""
    import onnx

    def nbits(variant):
        return [n for n in onnx.load(str(variant.path)).graph.node if n.op_type == "MatMulNBits"]

    def bits(node):
        return {a.name: a.i for a in node.attribute}["bits"]

    rtn = llama_variants["int4"]
    assert "RTN, symmetric" in rtn.quantization and "method='rtn', bits=4" in rtn.cli_command
    assert all(len(n.input) < 4 and {a.name: a.i for a in n.attribute}["accuracy_level"] == 4 for n in nbits(rtn))
    # the tied output projection (MatMul over Transpose(embedding) in optimum's graph) is quantized, at 8 bits
    assert [n.name for n in nbits(rtn) if bits(n) == 8] == ["/lm_head/MatMul_Q8"] and "at 8 bits" in rtn.quantization
    assert not any(n.op_type == "Transpose" and "embed" in n.input[0] for n in onnx.load(str(rtn.path)).graph.node)
    shell.user_ns["llama_dir"] = str(llama)
    shell.run_line_magic("load_model", "$llama_dir --name llama_hqq -q")
    hqq = shell.run_line_magic("export_onnx", "llama_hqq --quantize int4 --int4-method hqq -o -q")["int4"]
    assert hqq.ok and "HQQ" in hqq.quantization
    assert all(len(n.input) >= 4 and n.input[3] for n in nbits(hqq) if bits(n) == 4)  # zero points; the head RTN
    assert hqq.path != rtn.path and "method='hqq'" in hqq.cli_command
    with pytest.raises(Exception, match="int4-method"):
        shell.run_line_magic("export_onnx", "llama_hqq --quantize int4 --int4-method gptq")


def test_int4_kquant_keeps_the_output_projection_and_sensitive_layers_at_8_bits(shell, llama):
    """--int4-method kquant: llama.cpp's Q4_K_M mix over onnxruntime's k-quant search, on optimum's
    graph (the first of two layers' value and down projections and lm_head at 8 bits, the rest at
    4) and by onnxruntime-genai's builder (k_quant_mixed); each says so, and scores close to torch."""
    import onnx

    shell.user_ns["llama_dir"] = str(llama)
    shell.run_line_magic("load_model", "$llama_dir --name llama_kq -q")
    built = shell.run_line_magic("export_onnx", "llama_kq --levels fp32,genai --quantize int4 --int4-method kquant "
                                                "-o -q")
    int4, genai = built["int4"], built["genai-int4"]
    assert int4.ok and genai.ok, (int4.error, genai.error)
    bits = {n.name: {a.name: a.i for a in n.attribute}["bits"]
            for n in onnx.load(str(int4.path)).graph.node if n.op_type == "MatMulNBits"}
    eight = sorted(name for name, b in bits.items() if b == 8)
    assert eight == ["/lm_head/MatMul_Q8", "/model/layers.0/mlp/down_proj/MatMul_Q8",
                     "/model/layers.0/self_attn/v_proj/MatMul_Q8"], bits
    assert sum(b == 4 for b in bits.values()) == len(bits) - 3
    assert "Q4_K_M mix" in int4.quantization and "method='kquant'" in int4.cli_command
    assert "k_quant_mixed" in genai.quantization and "int4_algo_config=k_quant_mixed" in genai.cli_command
    quality = shell.run_line_magic("evaluate", "llama_kq --variants torch,int4,genai-int4 --max-tokens 256 "
                                               "--no-widget -o -q")
    rows = {r["variant"]: r for r in quality.rows}
    for name in ("int4", "genai-int4"):
        assert rows[name]["status"] == "ok" and rows[name]["pct_of_reference"] < 110, rows[name]


def test_chat_template_formats_the_greedy_prompts_and_is_refused_without_one(shell, llama, llama_variants, tiny_bert,
                                                                             tmp_path):
    import json
    import shutil

    from IPython.core.error import UsageError

    shell.user_ns["llama_onnx"] = llama_variants
    with pytest.raises(UsageError, match="tokenizer has no chat template"):
        shell.run_line_magic("evaluate", "llama_onnx --variants torch --chat-template --no-widget")
    chat = tmp_path / "chat-llama"
    shutil.copytree(llama, chat)
    config = json.loads((chat / "tokenizer_config.json").read_text())
    config["chat_template"] = ("{% for m in messages %}user: {{ m['content'] }} {% endfor %}"
                               "{% if add_generation_prompt %}assistant: {% endif %}")
    (chat / "tokenizer_config.json").write_text(json.dumps(config))
    shell.user_ns["chat_dir"] = str(chat)
    shell.run_line_magic("load_model", "$chat_dir --name chat_llama -q")
    plain = shell.run_line_magic("evaluate", "chat_llama --variants torch --no-widget -o -q")
    chatted = shell.run_line_magic("evaluate", "chat_llama --variants torch --chat-template --no-widget -o -q")
    assert any("chat template" in n for n in chatted.notes) and not any("chat template" in n for n in plain.notes)
    assert chatted.rows[0]["perplexity"] == plain.rows[0]["perplexity"]  # the text scored is the same
    assert chatted.fingerprint != plain.fingerprint  # the prompts are not
    shell.user_ns["tiny_enc_dir"] = str(tiny_bert)
    with pytest.raises(UsageError, match="--chat-template formats the prompts of text-generation models"):
        shell.run_line_magic("evaluate", "$tiny_enc_dir --data demo --chat-template --no-widget")

    # the benchmark's prompts too: exactly --prompt-lens tokens, the template's included
    from hfmagic.tasks.generation.chat import chat_frame, chat_inputs

    handle = shell.user_ns["chat_llama"]
    before, after = chat_frame(handle)
    tokenizer = handle.tokenizer()
    assert tokenizer.decode(before).replace(" ##", "") == "user :" and tokenizer.decode(after).replace(" ##", "") == "assistant :"
    text = "The central bank raised interest rates again on Thursday."
    for texts in (None, [text] * 2):
        ids = chat_inputs(handle, 2, 24, texts)["input_ids"]
        assert ids.shape == (2, 24) and list(ids[0][:len(before)]) == before and list(ids[0][-len(after):]) == after
    words = tokenizer(text, add_special_tokens=False)["input_ids"]
    room = 24 - len(before) - len(after)
    assert list(ids[0][len(before):-len(after)]) == words[:room]  # the text itself as the user's words, cut to fit
    bench = shell.run_line_magic("benchmark", f"chat_llama --variants torch,fp32 --prompt-lens 24 --new-tokens 4 "
                                              f"--batch-sizes 1 --chat-template --no-widget -o -q {FAST}")
    assert [r["status"] for r in bench.rows] == ["ok", "ok"] and bench.params["chat_template"] is True
    assert any(n.startswith("prompts: each a user's turn in chat_llama's chat template") for n in bench.notes)
    for line, expected in {"llama_onnx --chat-template": "tokenizer has no chat template",
                           "chat_llama --chat-template --prompt-lens 3": "holds none of the user's words",
                           "$tiny_enc_dir --chat-template": "formats the prompts of text-generation models"}.items():
        with pytest.raises(UsageError, match=expected):
            shell.run_line_magic("benchmark", f"{line} --no-widget -q {FAST}")
