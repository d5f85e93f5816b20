"""Config and tokenizer diff against the claimed base (methods.md §4).

Files are read as plain JSON/text, never through transformers: no remote code, nothing executed,
and a malformed file is reported rather than crashing the check. Rope settings are normalised
first, because transformers 5 writes `rope_parameters` where older configs wrote `rope_theta` +
`rope_scaling`: the same Llama-3.1 settings must not show up as a difference just because two
configs were saved by different library versions. Configs are easy to edit, so this diff is
evidence about what the author *says*; the weight distance decides what the model *is*.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from verification.provenance.weights import ProvenanceInputError

IGNORED_CONFIG_KEYS = {"transformers_version", "_name_or_path", "_commit_hash", "use_cache"}
GROUPS: dict[str, str] = {
    "max_position_embeddings": "context",
    "sliding_window": "context",
    "vocab_size": "vocabulary",
    "bos_token_id": "vocabulary",
    "eos_token_id": "vocabulary",
    "pad_token_id": "vocabulary",
    "dtype": "dtype",
}
ARCHITECTURE_KEYS = {
    "model_type", "architectures", "hidden_size", "intermediate_size", "num_hidden_layers",
    "num_attention_heads", "num_key_value_heads", "head_dim", "hidden_act", "tie_word_embeddings",
    "rms_norm_eps", "attention_bias", "mlp_bias", "layer_norm_eps",
}
MAX_LISTED_TOKENS = 50


def read_json(path: Path, what: str, required: bool = False) -> dict[str, Any] | None:
    if not path.is_file():
        if required:
            raise ProvenanceInputError(f"{path.parent}: no {path.name} ({what})")
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ProvenanceInputError(f"{path}: malformed {what} ({exc})") from exc
    if not isinstance(data, dict):
        raise ProvenanceInputError(f"{path}: {what} is not a JSON object")
    return data


def read_config(model_dir: Path) -> dict[str, Any]:
    return read_json(model_dir / "config.json", "model config", required=True)  # type: ignore[return-value]


def normalised_rope(config: dict[str, Any]) -> dict[str, Any]:
    """{theta, type, factor, ...} whichever way the config spells them."""
    parameters = config.get("rope_parameters")
    scaling = config.get("rope_scaling")
    merged: dict[str, Any] = {}
    if isinstance(parameters, dict):
        merged.update(parameters)
    if isinstance(scaling, dict):
        merged.update(scaling)
    if "rope_theta" in config:
        merged.setdefault("rope_theta", config["rope_theta"])
    # "type" is the pre-4.45 spelling of "rope_type"; "default" means no scaling at all.
    if "type" in merged:
        merged.setdefault("rope_type", merged.pop("type"))
    if merged.get("rope_type") == "default" and set(merged) <= {"rope_type", "rope_theta"}:
        merged.pop("rope_type")
    return {("theta" if key == "rope_theta" else key.removeprefix("rope_")): value for key, value in merged.items()}


def flatten_config(config: dict[str, Any]) -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in config.items():
        if key in IGNORED_CONFIG_KEYS or key in {"rope_parameters", "rope_scaling", "rope_theta"}:
            continue
        if key == "torch_dtype":
            key = "dtype"
        if isinstance(value, dict):
            for inner, inner_value in value.items():
                flat[f"{key}.{inner}"] = inner_value
        else:
            flat[key] = value
    for key, value in normalised_rope(config).items():
        flat[f"rope.{key}"] = value
    return flat


def group_of(field: str) -> str:
    if field.startswith("rope."):
        return "rope"
    if field.startswith("tokenizer."):
        return "tokenizer"
    if field in ARCHITECTURE_KEYS:
        return "architecture"
    return GROUPS.get(field, "other")


def _comparable(value: Any) -> Any:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else value


def config_diff(submitted: dict[str, Any], base: dict[str, Any]) -> list[dict[str, Any]]:
    a, b = flatten_config(submitted), flatten_config(base)
    rows = []
    for field in sorted(set(a) | set(b)):
        left, right = a.get(field), b.get(field)
        if _comparable(left) != _comparable(right):
            rows.append({"field": field, "submitted": left, "base": right, "group": group_of(field)})
    return rows


# --- tokenizer -----------------------------------------------------------------------------


def _token_content(value: Any) -> str | None:
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and isinstance(value.get("content"), str):
        return value["content"]
    return None


def _chat_template(model_dir: Path, tokenizer_config: dict[str, Any]) -> str | None:
    jinja = model_dir / "chat_template.jinja"
    if jinja.is_file():
        return jinja.read_text(encoding="utf-8", errors="replace")
    template_json = read_json(model_dir / "chat_template.json", "chat template")
    template = (template_json or {}).get("chat_template", tokenizer_config.get("chat_template"))
    if isinstance(template, list):  # named templates: [{"name": ..., "template": ...}]
        return json.dumps(template, sort_keys=True)
    return template if isinstance(template, str) else None


def model_vocab(tokenizer_json: dict[str, Any]) -> dict[str, int]:
    """token -> id of the tokenizer model itself (BPE/WordPiece dict or Unigram list)."""
    vocab = (tokenizer_json.get("model") or {}).get("vocab")
    if isinstance(vocab, dict):
        return {str(token): int(index) for token, index in vocab.items() if isinstance(index, int)}
    if isinstance(vocab, list):
        return {str(entry[0]): position for position, entry in enumerate(vocab) if isinstance(entry, list) and entry}
    return {}


def added_tokens(tokenizer_json: dict[str, Any]) -> dict[str, dict[str, Any]]:
    result = {}
    for entry in tokenizer_json.get("added_tokens") or []:
        if isinstance(entry, dict) and isinstance(entry.get("content"), str) and isinstance(entry.get("id"), int):
            result[entry["content"]] = {"id": entry["id"], "special": bool(entry.get("special"))}
    return result


def full_vocab(tokenizer_json: dict[str, Any] | None) -> dict[str, int]:
    """Every token string the tokenizer can emit with its id (model vocab + added tokens)."""
    if not tokenizer_json:
        return {}
    vocab = model_vocab(tokenizer_json)
    for content, info in added_tokens(tokenizer_json).items():
        vocab[content] = info["id"]
    return vocab


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def tokenizer_facts(model_dir: Path) -> dict[str, Any]:
    """Compact facts worth diffing; a malformed tokenizer file becomes an `error` fact."""
    facts: dict[str, Any] = {}
    try:
        tokenizer_json = read_json(model_dir / "tokenizer.json", "tokenizer")
        tokenizer_config = read_json(model_dir / "tokenizer_config.json", "tokenizer config") or {}
    except ProvenanceInputError as exc:
        return {"error": str(exc)}
    if tokenizer_json is None:
        facts["format"] = "absent (no tokenizer.json)"
    else:
        vocab = model_vocab(tokenizer_json)
        merges = (tokenizer_json.get("model") or {}).get("merges") or []
        canonical = json.dumps([sorted(vocab.items()), merges], ensure_ascii=False, separators=(",", ":"))
        facts["model_type"] = (tokenizer_json.get("model") or {}).get("type")
        facts["vocab_hash"] = _digest(canonical)[:16]
        facts["vocab_size"] = len(full_vocab(tokenizer_json))
        facts["added_tokens"] = added_tokens(tokenizer_json)
    for role in ("bos_token", "eos_token", "pad_token", "unk_token"):
        facts[role] = _token_content(tokenizer_config.get(role))
    facts["model_max_length"] = tokenizer_config.get("model_max_length")
    template = _chat_template(model_dir, tokenizer_config)
    facts["chat_template"] = None if template is None else f"sha256:{_digest(template)[:12]} ({len(template)} chars)"
    return facts


def _listed(tokens: list[str]) -> list[str]:
    if len(tokens) <= MAX_LISTED_TOKENS:
        return tokens
    return [*tokens[:MAX_LISTED_TOKENS], f"… ({len(tokens) - MAX_LISTED_TOKENS} more)"]


def tokenizer_diff(submitted_dir: Path, base_dir: Path) -> list[dict[str, Any]]:
    a, b = tokenizer_facts(submitted_dir), tokenizer_facts(base_dir)
    rows = []
    added_a, added_b = a.pop("added_tokens", {}), b.pop("added_tokens", {})
    for field in sorted(set(a) | set(b)):
        if a.get(field) != b.get(field):
            rows.append({"field": f"tokenizer.{field}", "submitted": a.get(field), "base": b.get(field), "group": "tokenizer"})
    only_submitted = sorted(set(added_a) - set(added_b), key=lambda t: added_a[t]["id"])
    only_base = sorted(set(added_b) - set(added_a), key=lambda t: added_b[t]["id"])
    if only_submitted or only_base:
        rows.append(
            {
                "field": "tokenizer.added_tokens (only on one side)",
                "submitted": _listed(only_submitted),
                "base": _listed(only_base),
                "group": "tokenizer",
            }
        )
    respecial = sorted(t for t in set(added_a) & set(added_b) if added_a[t] != added_b[t])
    if respecial:
        rows.append(
            {
                "field": "tokenizer.added_tokens (id or special changed)",
                "submitted": _listed([f"{t} {added_a[t]}" for t in respecial]),
                "base": _listed([f"{t} {added_b[t]}" for t in respecial]),
                "group": "tokenizer",
            }
        )
    return rows
