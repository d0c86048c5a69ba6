"""What a served image classifier takes and answers (see :class:`hfmagic.tasks.base.Requests`):
an image file (png, jpg) in base64 as ``{"inputs": "iVBORw0..."}``, or the file itself as the
request's body (``Content-Type: image/png``); the class, its label and softmax score."""

from __future__ import annotations

from hfmagic.tasks.base import EvalData, Requests
from hfmagic.tasks.classes import class_answers
from hfmagic.tasks.vision.images import ImageData, decode, encode


class ImageRequests(Requests):
    SHAPE = '"a png or jpg file in base64"'
    FILES = ("image/",)

    def example(self, model, value):
        return decode(value)

    def data(self, model, examples):
        return EvalData({"data": ImageData(list(examples), None, "requests", {})}, len(examples), "requests", {})

    def answers(self, model, data, prediction):
        return class_answers(model, prediction)

    def payloads(self, model, data):
        return [encode(image) for image in data.examples["data"].images]
