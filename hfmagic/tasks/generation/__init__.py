"""Decoder LLMs: the task, its decode loop and perplexity, GGUF files."""
