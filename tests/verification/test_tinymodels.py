"""The tiny models are real: they load through huggingface_hub's offline cache and generate."""

from __future__ import annotations

from huggingface_hub import snapshot_download

from verification import tinymodels as tm


def test_tiny_base_resolves_offline_through_huggingface_hub(tiny_base, hf_cache):
    path = snapshot_download(tiny_base.repo_id, cache_dir=hf_cache)
    assert path.endswith(tiny_base.sha)
    assert (tiny_base.path / "model.safetensors").exists()
    assert (hf_cache / "models--verity-test--tiny-base" / "refs" / "main").read_text() == tiny_base.sha


def test_tiny_models_differ_and_share_architecture(tiny_base, tiny_other_base):
    import json

    assert tiny_base.sha != tiny_other_base.sha
    a = json.loads((tiny_base.path / "config.json").read_text())
    b = json.loads((tiny_other_base.path / "config.json").read_text())
    assert a["hidden_size"] // a["num_attention_heads"] == 32
    for key in ("hidden_size", "num_hidden_layers", "vocab_size", "num_attention_heads"):
        assert a[key] == b[key]


def test_builds_are_deterministic(tmp_path, tiny_tokenizer):
    texts = ["Question: 2 + 3?\nAnswer: 5 #### 5"] * 4
    shas = []
    for attempt in range(2):
        model = tm.new_model(tiny_tokenizer, seed=7)
        tm.train(model, tiny_tokenizer, texts, steps=3, seed=7)
        shas.append(tm.snapshot_sha(tm.save(model, tiny_tokenizer, tmp_path / str(attempt))))
    assert shas[0] == shas[1]
