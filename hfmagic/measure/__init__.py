"""Measuring one configuration: the worker process, its timed runs, memory."""
