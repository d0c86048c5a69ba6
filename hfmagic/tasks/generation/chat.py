"""``--chat-template``: a decoder's prompts as a user's turn in its tokenizer's chat template, the
assistant's turn opened, for %benchmark's prompts and %evaluate's greedy prompts alike.

The template is rendered once around a marker and split there (:func:`chat_frame`): the tokens
before the user's words and after them. A prompt is then frame + content + frame, so a benchmark's
prompt is exactly ``--prompt-lens`` tokens, the content cut to the room the template leaves.
Perplexity reads the text itself (its windows are text, not turns), as lm-evaluation-harness's
rolling log-likelihood does.
"""

from __future__ import annotations

from hfmagic.core.errors import UsageProblem

_MARK = "\u2063hfmagic-content\u2063"  # an invisible separator no template writes on its own


def chat_frame(model) -> tuple[list[int], list[int]]:
    """(tokens before, tokens after) a user's words in ``model``'s chat template, the assistant's
    turn opened; refused in one line where its tokenizer has no template."""
    tokenizer = model.tokenizer()
    if not getattr(tokenizer, "chat_template", None):
        raise UsageProblem(f"{model.name}'s tokenizer has no chat template, so --chat-template cannot format its "
                           "prompts; leave it out (or load a model whose tokenizer_config.json has one)")
    text = tokenizer.apply_chat_template([{"role": "user", "content": _MARK}], add_generation_prompt=True,
                                         tokenize=False)
    before, _, after = text.partition(_MARK)
    encode = lambda part: tokenizer(part, add_special_tokens=False, verbose=False)["input_ids"] if part else []  # noqa: E731
    return list(encode(before)), list(encode(after))


def check_room(model, prompt_lens: list[int]) -> str:
    """Every prompt length holds the template and a word of content; the note that says what the
    prompts are."""
    before, after = chat_frame(model)
    frame = len(before) + len(after)
    if min(prompt_lens) <= frame:
        raise UsageProblem(f"{model.name}'s chat template takes {frame} tokens of each prompt, so a prompt of "
                           f"{min(prompt_lens)} holds none of the user's words; use --prompt-lens above {frame}")
    return (f"prompts: each a user's turn in {model.name}'s chat template ({frame} of its tokens), the assistant's "
            "turn opened; the content cut to fill the prompt length")


def chat_prompt(frame: tuple[list[int], list[int]], content, length: int | None = None) -> list[int]:
    """``content`` (token ids) in the frame; with ``length``, cut so the prompt is that long."""
    before, after = frame
    content = list(content)
    if length is not None:
        content = content[:length - len(before) - len(after)]
    return before + content + after


def chat_inputs(model, batch: int, seq: int, texts: list[str] | None) -> dict:
    """A benchmark's prompts of exactly (batch, seq) tokens in the chat template: real texts' tokens
    (``--inputs``, each row the next text, read on past its end into the following ones) or random
    valid token ids as the content."""
    import numpy as np

    frame = chat_frame(model)
    room = seq - len(frame[0]) - len(frame[1])
    if texts:
        from hfmagic.tasks.generation.evaluate import text_tokens  # perplexity's token stream

        tokenizer, rows = model.tokenizer(), []
        for i in range(batch):  # from text i on, as many as it takes to fill the room (repeated if all are short)
            start = i % len(texts)
            content = text_tokens(tokenizer, texts[start:] + texts[:start], room)
            rows.append((content * (room // max(len(content), 1) + 1))[:room])
    else:
        rng = np.random.default_rng(batch * 100_003 + seq)
        rows = rng.integers(0, int(model.config.get("vocab_size") or 2), size=(batch, room)).tolist()
    ids = np.asarray([chat_prompt(frame, row) for row in rows], dtype=np.int64)
    return {"input_ids": ids, "attention_mask": np.ones_like(ids)}
