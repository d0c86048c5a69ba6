"""export_onnx(): the variants of a model, built through a content-keyed cache."""
