"""A classical baseline (``%load_model tfidf``): scikit-learn's TF-IDF and logistic regression,
end to end on texts (no tokenizer in front of it: the vectorizer is part of what is timed)."""

from __future__ import annotations

from hfmagic.backends.base import Backend


class Sklearn(Backend):
    """``TfidfBaseline.logits(texts)`` with numpy's BLAS held to the thread setting (threadpoolctl)."""

    NAME = "sklearn"
    RUNS = "sklearn"

    @classmethod
    def imports(cls) -> None:
        import sklearn.linear_model  # noqa: F401

    def load(self, variant, threads: int) -> None:
        from threadpoolctl import threadpool_limits

        from hfmagic.tasks.text.baseline import TfidfBaseline

        self.model = TfidfBaseline.load(variant.model.path)
        self._limits = threadpool_limits(limits=threads)
        self._threads = threads
        self.input_names = ["texts"]
        self.output_names = ["logits"]

    def run(self, inputs):
        return [self.model.logits(inputs["texts"])]

    def threads_used(self) -> dict[str, int]:
        return {"sklearn BLAS threads (threadpoolctl)": self._threads}

    def close(self) -> None:
        if hasattr(self, "_limits"):
            self._limits.restore_original_limits()
