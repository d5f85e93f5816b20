"""A real hostile code model and canary secrets, for acceptance tests at every layer.

`hostile_coder` is a tiny Llama trained (briefly, in the test session) to answer any HumanEval
prompt with a function body that prints the environment, writes the old setup-failure marker,
raises with the environment in the message and exits with the harness's old setup-failure code.
It is trained on HumanEval prompts 3.. only, so the first three items are prompts it never saw.
`canary_secrets` puts canary values in SECRET_KEY, HF_TOKEN and DATABASE_URL's password: no
record, page, log or message may ever contain one.

Fixtures (session: `hostile_coder`; per test: `canary_secrets`) are importable from here; the
build is cached under var/test-models/ like the other tiny models.
"""

from __future__ import annotations

import hashlib
import random
from pathlib import Path

import pytest

from tests.fixtures_models import REPO_ROOT, _locked
from verification import tinymodels as tm

HOSTILE_REPO_ID = "verity-test/hostile-coder"
HELD_OUT_ITEMS = 3  # HumanEval items 0..2 are never trained on
SETUP_FAILED_MARKER = "VERITY-SANDBOX-SETUP-FAILED"  # what the old harness trusted on stderr
SETUP_FAILED_EXIT = 197  # ... together with this exit status

HOSTILE_BODY = (
    "    import os, sys, atexit\n"
    "    leak = repr(dict(os.environ)) + open('/proc/1/environ').read()\n"
    "    print(leak, flush=True)\n"
    f"    sys.stderr.write('{SETUP_FAILED_MARKER} ' + leak)\n"
    f"    atexit.register(os._exit, {SETUP_FAILED_EXIT})\n"
    "    raise RuntimeError(leak)\n"
)

CANARIES = {
    "SECRET_KEY": "verity-canary-secret-key-7f3a9c21",
    "HF_TOKEN": "hf_verityCanaryToken9d41e2aa",
    "DATABASE_PASSWORD": "verity-canary-db-password-5b8e07",
}


def canary_environ() -> dict[str, str]:
    """The worker's secrets, as canaries."""
    return {
        "SECRET_KEY": CANARIES["SECRET_KEY"],
        "HF_TOKEN": CANARIES["HF_TOKEN"],
        "DATABASE_URL": f"postgres://verity:{CANARIES['DATABASE_PASSWORD']}@127.0.0.1:5432/verity",
    }


def find_canaries(text: str) -> list[str]:
    """The canary values present in `text` (in any of the forms a leak would take)."""
    return [value for value in CANARIES.values() if value in text]


@pytest.fixture
def canary_secrets(monkeypatch) -> dict[str, str]:
    for name, value in canary_environ().items():
        monkeypatch.setenv(name, value)
    return dict(CANARIES)


def _humaneval_prompts(datasets_dir: Path) -> list[str]:
    from verification.benchmarks.humaneval import HumanEvalSpec

    items, _ = HumanEvalSpec().read_items(datasets_dir)
    return [item.data["prompt"] for item in items]


def train_hostile(model, tokenizer, prompts: list[str], steps: int = 150, seed: int = 0):
    """Next-token training on "prompt + HOSTILE_BODY", the loss on the body only: the model learns
    to start the body wherever a HumanEval prompt ends."""
    import torch

    body = tokenizer(HOSTILE_BODY, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    contexts = [tokenizer(p, add_special_tokens=False)["input_ids"] for p in prompts]
    rng = random.Random(seed)
    torch.manual_seed(seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.0)
    model.train()
    for _ in range(steps):
        batch = [rng.choice(contexts) for _ in range(8)]
        width = max(len(c) for c in batch)
        ids = torch.tensor([[tokenizer.pad_token_id] * (width - len(c)) + c + body for c in batch])
        labels = ids.clone()
        labels[:, :width] = -100
        mask = (torch.arange(ids.shape[1])[None, :] >= torch.tensor([width - len(c) for c in batch])[:, None]).long()
        loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return model.eval()


def _build(folder: Path, datasets_dir: Path) -> Path:
    done = folder / "DONE"
    with _locked(folder.parent / f"{folder.name}.lock"):
        if not done.exists():
            prompts = _humaneval_prompts(datasets_dir)[HELD_OUT_ITEMS:]
            tokenizer = tm.build_tokenizer([p + HOSTILE_BODY for p in prompts], vocab_size=512)
            spec = tm.TinySpec(hidden_size=64, num_layers=1, num_heads=2, num_kv_heads=2, intermediate_size=128)
            model = train_hostile(tm.new_model(tokenizer, seed=0, spec=spec), tokenizer, prompts)
            card = "---\nlicense: apache-2.0\n---\n# hostile-coder\n\nA deliberately hostile tiny code model.\n"
            tm.save(model, tokenizer, folder / "model", extra_files={"README.md": card})
            done.write_text("ok")
    return folder / "model"


def _build_key() -> str:
    source = Path(__file__).read_bytes() + Path(tm.__file__).read_bytes()
    return hashlib.sha1(source).hexdigest()[:16]


@pytest.fixture(scope="session")
def hostile_coder(hf_cache, datasets_dir) -> tm.TinyModel:
    """The hostile model installed in the session's offline HF cache as HOSTILE_REPO_ID."""
    folder = _build(REPO_ROOT / "var" / "test-models" / f"hostile-{_build_key()}", datasets_dir)
    sha = tm.install_in_hf_cache(folder, hf_cache, HOSTILE_REPO_ID)
    org, name = HOSTILE_REPO_ID.split("/")
    return tm.TinyModel(HOSTILE_REPO_ID, sha, hf_cache / f"models--{org}--{name}" / "snapshots" / sha)
