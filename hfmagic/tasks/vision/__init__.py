"""Image classification: the task, reading images, its evaluator and the digits ViT demo."""
