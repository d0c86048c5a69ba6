"""The built-in tasks, registered in this order (the newest registered is asked first which task a
saved config is for): the text tasks, text generation, image classification, speech recognition.
``import hfmagic`` imports this module; nothing in the layers below imports it."""
# ruff: noqa: I001 (the order of these imports is the order of registration)

from hfmagic.tasks.text import task as text  # noqa: F401
from hfmagic.tasks.generation import task as generation  # noqa: F401
from hfmagic.tasks.vision import task as vision  # noqa: F401
from hfmagic.tasks.speech import task as speech  # noqa: F401
