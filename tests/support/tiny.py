"""Tiny random models built from configs, with a tokenizer trained here on local text (no network).

``make_tiny(folder, arch, task)`` writes a folder that ``save_pretrained`` would: config, weights
(safetensors) and a fast tokenizer. BERT-size 32 hidden, 2 layers: about 0.2 MB, built in ~1 s.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

WORDS = ("the market rose as investors cheered strong results while the team won the final match "
         "and the minister said the new phone software would launch next year after the film "
         "festival award for best actor music album sales growth shares bank economy election "
         "government party vote player coach league season goal technology computer internet "
         "game users mobile network film star show tv series").split()

LABELS = ["business", "politics", "sport"]

# arch -> (config class, config kwargs, uses token_type_ids)
ARCHS = {
    "bert": ("BertConfig", dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                intermediate_size=64, max_position_embeddings=512), True),
    "distilbert": ("DistilBertConfig", dict(dim=32, n_layers=2, n_heads=2, hidden_dim=64,
                                            max_position_embeddings=512), False),
    "roberta": ("RobertaConfig", dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                      intermediate_size=64, max_position_embeddings=514,
                                      pad_token_id=1, bos_token_id=0, eos_token_id=2), False),
    "albert": ("AlbertConfig", dict(embedding_size=16, hidden_size=32, num_hidden_layers=2,
                                    num_attention_heads=2, intermediate_size=64,
                                    max_position_embeddings=512), True),
    "electra": ("ElectraConfig", dict(embedding_size=32, hidden_size=32, num_hidden_layers=2,
                                      num_attention_heads=2, intermediate_size=64,
                                      max_position_embeddings=512), True),
    "mpnet": ("MPNetConfig", dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                  intermediate_size=64, max_position_embeddings=514), False),
    "gpt2": ("GPT2Config", dict(n_embd=32, n_layer=2, n_head=2, n_positions=512), False),
}

# decoders for text-generation: arch -> (config class, config kwargs); 2 layers, 32 hidden, KV heads
# fewer than attention heads where the architecture has them (grouped-query attention)
DECODERS = {
    # head size 16: onnxruntime-genai's GroupQueryAttention takes multiples of 16 only
    "llama": ("LlamaConfig", dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                                  num_key_value_heads=2, max_position_embeddings=512, tie_word_embeddings=True)),
    "qwen2": ("Qwen2Config", dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                                  num_key_value_heads=2, max_position_embeddings=512)),
    "phi3": ("Phi3Config", dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                                num_key_value_heads=4, max_position_embeddings=512, original_max_position_embeddings=512)),
    "gpt2": ("GPT2Config", dict(n_embd=32, n_layer=2, n_head=2, n_positions=512)),
}

TASK_CLASS = {
    "text-classification": "AutoModelForSequenceClassification",
    "feature-extraction": "AutoModel",
    "token-classification": "AutoModelForTokenClassification",
    "question-answering": "AutoModelForQuestionAnswering",
    "text-generation": "AutoModelForCausalLM",
}


def sentences(n: int = 400, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(4, 30))) for _ in range(n)]


def labelled(n: int = 200, seed: int = 0):
    """A DataFrame of texts whose label follows from their words (so a TF-IDF model can learn it)."""
    import numpy as np
    import pandas as pd

    cue = {"business": "market shares bank", "politics": "minister vote election", "sport": "team match goal"}
    rng = np.random.default_rng(seed)
    labels = [LABELS[i] for i in rng.integers(0, len(LABELS), n)]
    return pd.DataFrame({"text": [f"{t} {cue[y]}" for t, y in zip(sentences(n, seed), labels)], "label": labels})


def vocab(special: list[str]) -> dict[str, int]:
    """The same WordPiece vocabulary in every process: the special tokens, every word of WORDS, and
    each letter alone and as a word piece (so any lowercase text tokenizes). A vocabulary trained
    here instead differed from one process to the next (the trainer breaks ties in hash order), and
    so did every tiny model's weights: a test could pass locally and fail in CI on a near-tie."""
    letters = sorted(set("".join(WORDS)) | set("abcdefghijklmnopqrstuvwxyz0123456789"))
    pieces = special + sorted(set(WORDS)) + letters + [f"##{c}" for c in letters] + list(".,!?'-:;")
    return {piece: i for i, piece in enumerate(dict.fromkeys(pieces))}


def make_tokenizer(arch: str):
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.WordPiece(vocab(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]), unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    cls, sep = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", cls), ("[SEP]", sep)])
    names = ["input_ids", "token_type_ids", "attention_mask"] if ARCHS[arch][2] else ["input_ids", "attention_mask"]
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]",
        sep_token="[SEP]", mask_token="[MASK]", model_max_length=512, model_input_names=names)


def make_decoder_tokenizer():
    """A word-level-ish tokenizer for decoders: no [CLS]/[SEP] template; [SEP] ends a text (eos)."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.WordPiece(vocab(["[PAD]", "[UNK]", "[BOS]", "[SEP]"]), unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]", bos_token="[BOS]",
                                   eos_token="[SEP]", model_max_length=512,
                                   model_input_names=["input_ids", "attention_mask"])


def make_tiny(folder: Path, arch: str = "bert", task: str = "text-classification", seed: int = 0) -> Path:
    """Build and save a tiny random ``arch`` model for ``task`` into ``folder``."""
    import torch
    import transformers

    if task == "text-generation":
        cls_name, kwargs = DECODERS[arch]
        tokenizer = make_decoder_tokenizer()
        config = getattr(transformers, cls_name)(vocab_size=len(tokenizer), pad_token_id=tokenizer.pad_token_id,
                                                 bos_token_id=tokenizer.bos_token_id,
                                                 eos_token_id=tokenizer.eos_token_id, **kwargs)
    else:
        cls_name, kwargs, _ = ARCHS[arch]
        tokenizer = make_tokenizer(arch)
        config = getattr(transformers, cls_name)(vocab_size=len(tokenizer), **kwargs)
    if task == "text-classification":
        config.num_labels = len(LABELS)
        config.id2label = dict(enumerate(LABELS))
        config.label2id = {v: k for k, v in config.id2label.items()}
    elif task == "token-classification":
        config.num_labels = 3
        config.id2label = {0: "O", 1: "B-ORG", 2: "I-ORG"}
        config.label2id = {v: k for k, v in config.id2label.items()}
    if arch == "gpt2" and task != "text-generation":
        config.pad_token_id = tokenizer.pad_token_id
    torch.manual_seed(seed)
    model = getattr(transformers, TASK_CLASS[task]).from_config(config).eval()
    folder = Path(folder)
    model.save_pretrained(folder, safe_serialization=True)
    tokenizer.save_pretrained(folder)
    return folder


# tiny image classifiers: arch -> (config class, config kwargs, image processor class, its size kwargs);
# 32 px images, 10 classes (the digits')
IMAGE_ARCHS = {
    "vit": ("ViTConfig", dict(image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                              intermediate_size=64), "ViTImageProcessor", {"size": {"height": 32, "width": 32}}),
    "convnext": ("ConvNextConfig", dict(hidden_sizes=[8, 16, 32, 64], depths=[1, 1, 1, 1], image_size=32),
                 "ConvNextImageProcessor", {"size": {"shortest_edge": 32}}),
    "swin": ("SwinConfig", dict(image_size=32, patch_size=4, embed_dim=16, depths=[1, 1], num_heads=[2, 2], window_size=4),
             "ViTImageProcessor", {"size": {"height": 32, "width": 32}}),
    "resnet": ("ResNetConfig", dict(embedding_size=8, hidden_sizes=[8, 16], depths=[1, 1]),
               "ConvNextImageProcessor", {"size": {"shortest_edge": 32}}),
}


def make_tiny_image(folder: Path, arch: str = "vit", seed: int = 0) -> Path:
    """A tiny random ``arch`` image classifier for the digits' 10 classes, with its image processor."""
    import torch
    import transformers

    cls_name, kwargs, processor_cls, size = IMAGE_ARCHS[arch]
    labels = [str(i) for i in range(10)]
    config = getattr(transformers, cls_name)(num_channels=3, num_labels=10, id2label=dict(enumerate(labels)),
                                             label2id={n: i for i, n in enumerate(labels)}, **kwargs)
    torch.manual_seed(seed)
    model = transformers.AutoModelForImageClassification.from_config(config).eval()
    folder = Path(folder)
    model.save_pretrained(folder, safe_serialization=True)
    getattr(transformers, processor_cls)(**size).save_pretrained(folder)
    return folder


# tiny random CTC speech models: arch -> (config class, model class); 2 layers, hidden 32, a 2-layer
# convolutional feature encoder (one frame per 20 samples), the characters of English as vocabulary
SPEECH_ARCHS = {"wav2vec2": ("Wav2Vec2Config", "Wav2Vec2ForCTC"), "hubert": ("HubertConfig", "HubertForCTC")}


def make_tiny_speech(folder: Path, arch: str = "wav2vec2", seed: int = 0) -> Path:
    """A tiny random CTC model with its processor (feature extractor at 16 kHz, character vocabulary)."""
    import json

    import torch
    import transformers

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    chars = list("abcdefghijklmnopqrstuvwxyz'")
    vocab = {"<pad>": 0, "<s>": 1, "</s>": 2, "<unk>": 3, "|": 4, **{c: i + 5 for i, c in enumerate(chars)}}
    (folder / "vocab.json").write_text(json.dumps(vocab))
    tokenizer = transformers.Wav2Vec2CTCTokenizer(str(folder / "vocab.json"), word_delimiter_token="|")
    extractor = transformers.Wav2Vec2FeatureExtractor(feature_size=1, sampling_rate=16000, padding_value=0.0,
                                                      do_normalize=True, return_attention_mask=False)
    config_cls, model_cls = SPEECH_ARCHS[arch]
    config = getattr(transformers, config_cls)(
        vocab_size=len(vocab), hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
        conv_dim=(16, 16), conv_stride=(5, 4), conv_kernel=(10, 4), num_conv_pos_embeddings=16,
        num_conv_pos_embedding_groups=2, pad_token_id=0)
    torch.manual_seed(seed)
    getattr(transformers, model_cls)(config).eval().save_pretrained(folder, safe_serialization=True)
    transformers.Wav2Vec2Processor(feature_extractor=extractor, tokenizer=tokenizer).save_pretrained(folder)
    return folder


def make_tiny_whisper(folder: Path, seed: int = 0) -> Path:
    """A tiny random Whisper (1 encoder and 1 decoder layer, hidden 32, 80 mel bins) with its
    processor: the feature extractor and a byte-level tokenizer (Whisper's special tokens and the
    256 byte symbols, no merges: the same in every process)."""
    import torch
    import transformers
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    special = ["<|endoftext|>", "<|startoftranscript|>", "<|en|>", "<|transcribe|>", "<|notimestamps|>"]
    symbols = special + sorted(pre_tokenizers.ByteLevel.alphabet())
    bpe = Tokenizer(models.BPE(vocab={t: i for i, t in enumerate(symbols)}, merges=[]))
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    bpe.add_special_tokens(special)
    tokenizer = transformers.WhisperTokenizerFast(tokenizer_object=bpe, unk_token="<|endoftext|>",
                                                  bos_token="<|endoftext|>", eos_token="<|endoftext|>",
                                                  pad_token="<|endoftext|>")
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in special}
    config = transformers.WhisperConfig(
        vocab_size=len(tokenizer), d_model=32, encoder_layers=1, decoder_layers=1, encoder_attention_heads=2,
        decoder_attention_heads=2, encoder_ffn_dim=64, decoder_ffn_dim=64, num_mel_bins=80, max_target_positions=64,
        pad_token_id=ids["<|endoftext|>"], bos_token_id=ids["<|endoftext|>"], eos_token_id=ids["<|endoftext|>"],
        decoder_start_token_id=ids["<|startoftranscript|>"])
    torch.manual_seed(seed)
    model = transformers.WhisperForConditionalGeneration(config).eval()
    model.generation_config = transformers.GenerationConfig(
        decoder_start_token_id=ids["<|startoftranscript|>"], eos_token_id=ids["<|endoftext|>"],
        pad_token_id=ids["<|endoftext|>"], max_length=64)
    model.save_pretrained(folder, safe_serialization=True)
    transformers.WhisperProcessor(feature_extractor=transformers.WhisperFeatureExtractor(feature_size=80),
                                  tokenizer=tokenizer).save_pretrained(folder)
    return folder


def varied_classifier(src, dst, noise=0.0, seed=0):
    """The tiny BERT with weights large enough that its predictions vary across texts (a freshly
    initialised tiny model predicts one class for everything); ``noise`` then perturbs its head."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    model = AutoModelForSequenceClassification.from_pretrained(src).eval()
    tok = AutoTokenizer.from_pretrained(src)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for mod in model.modules():
            if isinstance(mod, torch.nn.Linear):
                mod.weight.copy_(torch.randn(mod.weight.shape, generator=gen) * 0.3)
            elif isinstance(mod, torch.nn.Embedding):
                mod.weight.copy_(torch.randn(mod.weight.shape, generator=gen))
        pooled = model.bert(**tok(sentences(200, seed=9), padding=True, return_tensors="pt")).pooler_output
        model.classifier.bias.copy_(-model.classifier.weight @ pooled.mean(0))  # balanced classes
        if noise:
            model.classifier.weight.add_(torch.randn(model.classifier.weight.shape,
                                                     generator=torch.Generator().manual_seed(seed + 1)) * noise)
    model.save_pretrained(dst, safe_serialization=True)
    tok.save_pretrained(dst)
    return dst


def onnx_file(folder, out):
    """An ONNX file of another model, to stand in for a lossy variant (export_onnx would refuse to
    call a different model a variant of this one)."""
    from optimum.exporters.onnx import main_export

    main_export(str(folder), output=str(out), task="text-classification")
    return out / "model.onnx"


def scramble(model, seed: int = 0):
    """Weights large enough that a tiny random model's predictions vary (a fresh one predicts the same
    class, tag or span for everything, which would make every figure below trivially equal)."""
    import torch

    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for mod in model.modules():
            if isinstance(mod, torch.nn.Linear):
                mod.weight.copy_(torch.randn(mod.weight.shape, generator=gen) * 0.3)
                if mod.bias is not None:
                    mod.bias.zero_()
            elif isinstance(mod, torch.nn.Embedding):
                mod.weight.copy_(torch.randn(mod.weight.shape, generator=gen))
    return model


def save(model, tokenizer, folder: Path, **config_extra) -> Path:
    model.save_pretrained(folder, safe_serialization=True)
    if tokenizer is not None:
        tokenizer.save_pretrained(folder)
    if config_extra:
        path = folder / "config.json"
        config = json.loads(path.read_text())
        config.update(config_extra)
        path.write_text(json.dumps(config, indent=2))
    return folder


def bert_config(tokenizer, **kw):
    from transformers import BertConfig

    return BertConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                      intermediate_size=64, max_position_embeddings=512, **kw)


def frame(seed, n=40):
    import pandas as pd

    rng = random.Random(seed)
    texts = sentences(n, seed=seed)
    return pd.DataFrame({"text": texts, "label": [rng.choice(LABELS) for _ in texts]})
