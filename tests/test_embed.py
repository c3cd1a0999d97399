"""Text embeddings: the offline all-MiniLM-L6-v2 for real, and the Qwen3-VL-Embedding text
path (chat format, <|endoftext|> last-token pooling) on a tiny random Qwen3-VL checkpoint
built here, loaded through the same code as a released one."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
import pytest
import torch

from core.config import EmbedSettings, Settings
from core.errors import ModelUnavailable
from model import embed


@pytest.fixture(scope="module")
def minilm():
    return Settings()


def test_minilm_offline_normalised_and_meaningful(minilm):
    texts = ["The committee approved the quarterly budget.",
             "The quarterly budget was approved by the committee.",
             "A red car drives across the intersection."]
    v = embed.embed(texts, kind="document", settings=minilm)
    assert v.shape == (3, 384) and v.dtype == np.float32 and embed.dim(minilm) == 384
    assert np.allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)
    assert v[0] @ v[1] > 0.7 and v[0] @ v[1] > v[0] @ v[2] + 0.5
    q = embed.embed(["when was the budget approved"], kind="query", settings=minilm)[0]
    assert q @ v[0] > q @ v[2] and q @ v[1] > q @ v[2]
    assert embed.model_id(minilm).startswith("all-MiniLM-L6-v2@")
    assert embed.embed([], kind="query", settings=minilm).shape == (0, 384)
    with pytest.raises(ValueError):
        embed.embed(["x"], kind="passage", settings=minilm)


def test_unknown_model_says_how_to_provide_it(tmp_path):
    s = Settings(model_cache=tmp_path, embed=EmbedSettings(model="Qwen/Qwen3-Embedding-0.6B"))
    with pytest.raises(ModelUnavailable) as e:
        embed.embed(["x"], settings=s)
    message = str(e.value)
    assert "Qwen/Qwen3-Embedding-0.6B" in message and "CHRONOSCOPE_EMBED__MODEL=" in message


def test_last_token_pool_either_padding():
    hidden = torch.arange(2 * 4 * 3, dtype=torch.float32).reshape(2, 4, 3)
    right = torch.tensor([[1, 1, 0, 0], [1, 1, 1, 1]])
    left = torch.tensor([[0, 0, 1, 1], [0, 1, 1, 1]])
    assert torch.equal(embed.last_token_pool(hidden, right), hidden[[0, 1], [1, 3]])
    assert torch.equal(embed.last_token_pool(hidden, left), hidden[[0, 1], [3, 3]])


WORDS = "the a of to budget was approved by committee red car crosses street quarterly " \
        "report send finance NULL Represent user's input. Retrieve video moments, speech " \
        "or on-screen text relevant query. system user assistant".split()
SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>",
            "<|vision_end|>", "<|image_pad|>", "<|video_pad|>"]
CHATML = ("{% for m in messages %}<|im_start|>{{ m.role }}\n{% for c in m.content %}"
          "{{ c.text }}{% endfor %}<|im_end|>\n{% endfor %}"
          "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")


def _tokenizer():
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {t: i for i, t in enumerate(["<unk>"] + WORDS)}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>",
                                   pad_token="<|endoftext|>", eos_token="<|im_end|>",
                                   additional_special_tokens=SPECIALS)
    fast.chat_template = CHATML
    return fast


@pytest.fixture(scope="module")
def tiny_vl(tmp_path_factory):
    """A random 2-layer Qwen3-VL with a word-level tokenizer: the real classes and loading
    path at a size that builds in a second. The tokenizer does not append <|endoftext|>,
    so the backend must."""
    from transformers import Qwen3VLConfig, Qwen3VLForConditionalGeneration

    fast = _tokenizer()
    ids = {t: fast.convert_tokens_to_ids(t) for t in SPECIALS}
    assert min(ids.values()) > len(WORDS)
    config = Qwen3VLConfig(
        text_config=dict(vocab_size=len(fast), hidden_size=32, intermediate_size=64,
                         num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1,
                         head_dim=16, max_position_embeddings=512,
                         rope_parameters={"rope_type": "default", "rope_theta": 10000,
                                          "mrope_section": [4, 2, 2],
                                          "mrope_interleaved": True}),
        vision_config=dict(depth=1, hidden_size=16, intermediate_size=32, num_heads=1,
                           patch_size=16, temporal_patch_size=2, spatial_merge_size=2,
                           out_hidden_size=32, num_position_embeddings=16,
                           deepstack_visual_indexes=[0]),
        image_token_id=ids["<|image_pad|>"], video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"], vision_end_token_id=ids["<|vision_end|>"])
    torch.manual_seed(0)
    directory = tmp_path_factory.mktemp("tiny") / "Qwen3-VL-Embedding-tiny"
    Qwen3VLForConditionalGeneration(config).save_pretrained(directory)
    fast.save_pretrained(directory)
    return directory


def test_qwen3_vl_embedding_text_path(tiny_vl):
    s = Settings(embed=EmbedSettings(model=str(tiny_vl), batch_size=4))
    texts = ["the budget was approved by the committee", "red car", "send the finance report",
             "a", "quarterly report"]
    v = embed.embed(texts, kind="document", settings=s)
    assert v.shape == (5, 32) and v.dtype == np.float32 and embed.dim(s) == 32
    assert np.allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)
    assert embed.model_id(s).startswith("Qwen3-VL-Embedding-tiny@")

    backend = embed.Embedder.get(s).backend
    assert isinstance(backend, embed.Qwen3VLEmbeddingBackend)
    # The checkpoint's weights were loaded, not a fresh random initialisation.
    from safetensors.torch import load_file
    saved = load_file(tiny_vl / "model.safetensors")
    assert torch.equal(saved["model.language_model.embed_tokens.weight"],
                       backend.model.language_model.embed_tokens.weight)
    prompt = backend.format("red car", "document")
    assert prompt == ("<|im_start|>system\nRepresent the user's input.<|im_end|>\n"
                      "<|im_start|>user\nred car<|im_end|>\n<|im_start|>assistant\n")
    # Padded in a batch of mixed lengths, each vector is still the unpadded sequence's final
    # <|endoftext|> hidden state.
    for text, got in zip(texts, v):
        ids = backend.ids(text, "document")
        assert ids[-1] == backend.tokenizer.convert_tokens_to_ids("<|endoftext|>")
        with torch.inference_mode():
            hidden = backend.model(input_ids=torch.tensor([ids])).last_hidden_state[0, -1]
        want = torch.nn.functional.normalize(hidden, dim=-1).numpy()
        assert np.allclose(got, want, atol=1e-5), text
    # Queries carry their own instruction, so the same words embed differently.
    q = embed.embed(["red car"], kind="query", settings=s)[0]
    assert not np.allclose(q, v[1], atol=1e-3)


def test_qwen3_embedding_queries_get_the_instruction(tmp_path):
    """A tiny random Qwen3 text model saved as a sentence-transformers model (last-token
    pooling, normalised), as Qwen3-Embedding is: documents go in bare, queries with the
    instruction, and both come out unit length."""
    from sentence_transformers import SentenceTransformer
    from sentence_transformers import models as st_models
    from transformers import Qwen3Config, Qwen3Model

    fast = _tokenizer()
    torch.manual_seed(0)
    base = tmp_path / "qwen3-base"
    Qwen3Model(Qwen3Config(vocab_size=len(fast), hidden_size=32, intermediate_size=64,
                           num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1,
                           head_dim=16, max_position_embeddings=512)).save_pretrained(base)
    fast.save_pretrained(base)
    word = st_models.Transformer(str(base))
    st = SentenceTransformer(modules=[word, st_models.Pooling(32, pooling_mode="lasttoken"),
                                      st_models.Normalize()])
    directory = tmp_path / "Qwen3-Embedding-tiny"
    st.save(str(directory))

    s = Settings(embed=EmbedSettings(model=str(directory)))
    backend = embed.Embedder.get(s).backend
    assert isinstance(backend, embed.SentenceTransformerBackend) and backend.qwen
    d = embed.embed(["red car"], kind="document", settings=s)
    q = embed.embed(["red car"], kind="query", settings=s)
    assert d.shape == q.shape == (1, 32)
    assert np.allclose(np.linalg.norm(q, axis=1), 1.0, atol=1e-5)
    assert np.allclose(d, st.encode(["red car"], normalize_embeddings=True), atol=1e-5)
    prompt = f"Instruct: {embed.TASK}\nQuery:"
    assert np.allclose(q, st.encode(["red car"], prompt=prompt, normalize_embeddings=True),
                       atol=1e-5)
    assert not np.allclose(q, d, atol=1e-3)


QUERIES = ["when was the budget approved", "  Somebody took the ROYAL jewels!  ", "00:30",
           "Café naïve 北京 🎉 test", "red car crossing the intersection",
           " ".join(["budget"] * 400), "a\tb\nc", "x"]


def test_minilm_queries_in_numpy_equal_sentence_transformers(minilm):
    """Queries run in numpy (no torch on a command-line search) on the same weights: the
    vectors equal sentence-transformers' (cosine >= 1 - 1e-5), alone or padded in a batch,
    truncation of a long text included; documents keep sentence-transformers."""
    from model.minilm_numpy import MiniLMNumpy
    model = embed.Embedder.get(minilm)
    assert isinstance(model.backend_for("query"), MiniLMNumpy)
    assert isinstance(model.backend_for("document"), embed.SentenceTransformerBackend)
    want = model.backend.model.encode(QUERIES, normalize_embeddings=True)
    batch = embed.embed(QUERIES, kind="query", settings=minilm)
    alone = np.concatenate([embed.embed([q], kind="query", settings=minilm) for q in QUERIES])
    for got in (batch, alone):
        assert got.dtype == np.float32 and got.shape == want.shape
        assert (np.sum(got * want, axis=1) >= 1 - 1e-5).all()
    docs = embed.embed(QUERIES[:3], kind="document", settings=minilm)
    assert (np.sum(docs * batch[:3], axis=1) >= 1 - 1e-5).all()


def test_numpy_backend_cls_pooling_bert(tmp_path):
    """Another BERT sentence-transformers model (CLS pooling, as bge-small has) runs in numpy
    too and equals sentence-transformers; a model numpy cannot run (Qwen3, above) does not."""
    import shutil
    from sentence_transformers import SentenceTransformer
    from sentence_transformers import models as st_models
    from transformers import BertConfig, BertModel

    minilm_dir = embed.Embedder.get(Settings()).path
    torch.manual_seed(0)
    base = tmp_path / "bert-base"
    BertModel(BertConfig(vocab_size=30522, hidden_size=32, intermediate_size=64,
                         num_hidden_layers=2, num_attention_heads=4)).save_pretrained(base)
    for name in ("tokenizer.json", "tokenizer_config.json", "vocab.txt",
                 "special_tokens_map.json"):
        shutil.copy(minilm_dir / name, base / name)
    word = st_models.Transformer(str(base), max_seq_length=64)
    st = SentenceTransformer(modules=[word, st_models.Pooling(32, pooling_mode="cls"),
                                      st_models.Normalize()])
    directory = tmp_path / "bert-cls-tiny"
    st.save(str(directory))

    s = Settings(embed=EmbedSettings(model=str(directory)))
    from model.minilm_numpy import MiniLMNumpy
    assert isinstance(embed.Embedder.get(s).backend_for("query"), MiniLMNumpy)
    got = embed.embed(QUERIES, kind="query", settings=s)
    want = st.encode(QUERIES, normalize_embeddings=True)
    assert (np.sum(got * want, axis=1) >= 1 - 1e-5).all()
