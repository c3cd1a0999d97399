"""Visual embeddings through the real loading path: a tiny random SigLIP 2 (published config,
shrunk) with a real offline tokenizer, and the tiny random Qwen3-VL as Qwen3-VL-Embedding
for clips with absolute times. Both are saved as checkpoint directories and configured by
CHRONOSCOPE_VISUAL__MODEL, as a user would."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
import pytest
import torch

from core.config import Settings, VisualSettings
from core.errors import ModelUnavailable
from core.types import Frame
from fixtures.visual_tiny import build
from model import visual


def picture(seed: int, h: int = 120, w: int = 160) -> np.ndarray:
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (6, 8, 3), dtype=np.uint8)
    return np.ascontiguousarray(np.kron(small, np.ones((h // 6, w // 8, 1), np.uint8)))


@pytest.fixture(scope="module")
def siglip(tmp_path_factory):
    directory = build(tmp_path_factory.mktemp("visual") / "siglip2-tiny")
    return Settings(visual=VisualSettings(model=str(directory), batch_size=3,
                                          cpu_dtype="float32"))


def test_images_unit_rows_batch_independent_and_from_the_checkpoint(siglip):
    images = [picture(i) for i in range(5)]
    v = visual.embed_images(images, siglip)
    assert v.shape == (5, 32) and v.dtype == np.float32 and visual.dim(siglip) == 32
    assert np.allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)
    assert visual.model_id(siglip).startswith("siglip2-tiny@")
    # Batches of 3 and 2, or one at a time: the same vectors.
    alone = np.concatenate([visual.embed_images([im], siglip) for im in images])
    assert np.allclose(v, alone, atol=1e-5)
    assert not np.allclose(v[0], v[1], atol=1e-3)
    # Frames and arrays are the same input.
    frames = [Frame(t_ms=1000 * i, pts=i, image=im) for i, im in enumerate(images)]
    assert np.allclose(visual.embed_images(frames, siglip), v, atol=1e-6)

    model = visual.VisualEmbedder.get(siglip)
    assert isinstance(model.backend, visual.ClipBackend) and model.backend.siglip
    from safetensors.torch import load_file
    saved = load_file(siglip.visual.model + "/model.safetensors")
    name = next(k for k in saved if "patch_embedding.weight" in k)
    loaded = dict(model.backend.model.named_parameters())[name]
    assert torch.equal(saved[name], loaded)
    # What the real processor and model compute, normalised.
    backend = model.backend
    inputs = backend.processor(images=images[:1], return_tensors="pt")
    with torch.inference_mode():
        want = backend.model.get_image_features(**inputs).pooler_output[0]
    assert np.allclose(v[0], torch.nn.functional.normalize(want, dim=-1).numpy(), atol=1e-5)


def test_texts_tokenized_as_siglip_was_trained(siglip):
    texts = ["a red car crossing the street", "A Red Car Crossing The Street",
             "people walking in a park " * 30, "x"]
    v = visual.embed_texts(texts, siglip)
    assert v.shape == (4, 32) and np.allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)
    assert np.allclose(v[0], v[1], atol=1e-6)      # lowercased
    # Padded to the full length: a text's vector does not depend on its batch neighbours.
    assert np.allclose(visual.embed_texts(["x"], siglip)[0], v[3], atol=1e-5)
    assert visual.embed_texts([], siglip).shape == (0, 32)
    assert visual.embed_images([], siglip).shape == (0, 32)


def test_clip_is_the_mean_direction_of_its_frames(siglip):
    clip = [Frame(t_ms=t, pts=t, image=picture(t)) for t in (3000, 1000, 2000)]
    v = visual.embed_clips([clip, clip[:1]], siglip)
    frames = visual.embed_images(clip, siglip)
    mean = frames.mean(axis=0)
    assert np.allclose(v[0], mean / np.linalg.norm(mean), atol=1e-5)
    assert np.allclose(v[1], frames[0], atol=1e-5)
    with pytest.raises(ValueError):
        visual.embed_clips([[]], siglip)


def test_bfloat16_on_cpu_stays_close_to_float32_on_real_frames(siglip, media):
    from indexer.decode import sample_frames
    frames = list(sample_frames(media / "people_walking_139s.mp4", end_ms=20_000, fps=0.5))
    bf16 = siglip.model_copy(update={"visual": siglip.visual.model_copy(
        update={"cpu_dtype": "bfloat16"})})
    backend = visual.VisualEmbedder.get(bf16).backend
    assert backend.model.vision_model.dtype == torch.bfloat16
    assert backend.model.text_model.dtype == torch.float32     # as model.siglip_numpy
    assert backend.calibration == visual.VisualEmbedder.get(siglip).backend.calibration
    want, got = visual.embed_images(frames, siglip), visual.embed_images(frames, bf16)
    assert got.dtype == np.float32 and len(got) == len(frames) >= 9
    assert float(np.sum(want * got, axis=1).min()) > 0.99
    want, got = visual.embed_texts(["people walking"], siglip), visual.embed_texts(
        ["people walking"], bf16)
    assert float(want[0] @ got[0]) > 0.99
    # auto: bfloat16 exactly where this CPU multiplies it in hardware
    from model import base
    auto = siglip.model_copy(update={"visual": siglip.visual.model_copy(
        update={"cpu_dtype": "auto"})})
    assert visual.VisualEmbedder.get(auto).backend.model.vision_model.dtype == \
        (torch.bfloat16 if base.cpu_bf16_native() else torch.float32)


def test_no_weights_says_which_setting_enables_it(tmp_path):
    s = Settings(model_cache=tmp_path, visual=VisualSettings())
    with pytest.raises(ModelUnavailable) as e:
        visual.embed_images([picture(0)], s)
    message = str(e.value)
    assert "visual search" in message and "google/siglip2-base-patch16-224" in message
    assert "CHRONOSCOPE_VISUAL__MODEL=" in message
    off = Settings(model_cache=tmp_path, visual=VisualSettings(enabled=False))
    with pytest.raises(ModelUnavailable, match="CHRONOSCOPE_VISUAL__ENABLED=true"):
        visual.model_id(off)
    missing = Settings(visual=VisualSettings(model=str(tmp_path / "nowhere")))
    with pytest.raises(ModelUnavailable, match="CHRONOSCOPE_VISUAL__MODEL"):
        visual.dim(missing)


@pytest.fixture(scope="module")
def qwen(tmp_path_factory):
    from tests.qwen_tiny import build_tiny
    directory = build_tiny(tmp_path_factory.mktemp("qwen") / "Qwen3-VL-Embedding-tiny")
    return Settings(visual=VisualSettings(model=str(directory), frame_side=64, batch_size=8))


def _clip(start_ms: int, n: int = 4) -> list[Frame]:
    return [Frame(t_ms=start_ms + 1000 * i, pts=i, image=picture(i, 64, 64)) for i in range(n)]


def test_qwen_clip_sees_absolute_times_and_pools_the_last_token(qwen):
    model = visual.VisualEmbedder.get(qwen)
    backend = model.backend
    assert isinstance(backend, visual.QwenBackend) and model.dim == 64
    hour, start = _clip(3_600_000), _clip(0)
    v = visual.embed_clips([hour, start, hour[:3]], qwen)
    assert v.shape == (3, 64) and v.dtype == np.float32
    assert np.allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)
    # Same pixels, other times: the labels are part of what is embedded.
    assert not np.allclose(v[0], v[1], atol=1e-4)

    # The prompt the processor expands carries the absolute time of each frame group, and
    # the vector is the final <|endoftext|> hidden state of the unpadded sequence.
    from model.qwen.video import PROCESSOR_VIDEO_KWARGS, prepare_video
    video = prepare_video(hour, qwen.visual.frame_side)
    text = backend._text(visual.VL_DOCUMENT, [{"type": "video"}])
    inputs = backend.processor(text=[text], videos=[video.pixels],
                               video_metadata=[video.metadata], return_tensors="pt",
                               **PROCESSOR_VIDEO_KWARGS)
    inputs.pop("video_metadata", None)
    prompt = backend.processor.tokenizer.decode(inputs["input_ids"][0])
    assert "<3600.0 seconds>" in prompt and "<3602.0 seconds>" in prompt
    assert "Represent the user's input." in prompt
    assert int(inputs["input_ids"][0, -1]) == backend.eos
    with torch.inference_mode():
        hidden = backend.model(**inputs).last_hidden_state[0, -1]
    want = torch.nn.functional.normalize(hidden.float(), dim=-1).numpy()
    assert np.allclose(v[0], want, atol=1e-4)


def test_qwen_images_and_texts_share_the_space(qwen):
    images = visual.embed_images([picture(1, 64, 96), picture(2, 96, 64)], qwen)
    texts = visual.embed_texts(["a car driving past", "people walking"], qwen)
    assert images.shape == (2, 64) and texts.shape == (2, 64)
    assert np.allclose(np.linalg.norm(images, axis=1), 1.0, atol=1e-5)
    assert not np.allclose(texts[0], texts[1], atol=1e-4)
    assert visual.model_id(qwen).startswith("Qwen3-VL-Embedding-tiny@")
