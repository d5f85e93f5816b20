"""Peak memory and time of the provenance check on a >1 GB model against its base.

Builds (once, under --work-dir, default /tmp/verity-provenance-bench) a Llama-shaped float32 model
of ~271M parameters (hidden 1024, 16 layers, MLP 2816, vocab 32000, untied: 1.08 GB, written as two
safetensors shards with an index) and a copy with a rank-8 LoRA merged into every linear layer.
Then runs `check_provenance(copy, base)` in a fresh process and prints its peak RSS
(VmHWM), the RSS right before the check (interpreter + torch), and the wall and CPU time.

What it shows: the check streams one tensor (or row block) at a time from safetensors, so the
peak above the baseline is a few tensors (the largest here, the 32000×1024 embedding, is 131 MB),
not the 2.2 GB of the two models.

    .venv/bin/python benchmarks/provenance_memory.py [--work-dir DIR] [--with-other] [--threads N]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

HIDDEN, LAYERS, MLP, VOCAB, HEADS = 1024, 16, 2816, 32000, 16
LORA_RANK = 8
SHARD_BYTES = 600 * 1024 * 1024


def config() -> dict:
    return {
        "architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": HIDDEN,
        "intermediate_size": MLP, "num_hidden_layers": LAYERS, "num_attention_heads": HEADS,
        "num_key_value_heads": HEADS, "head_dim": HIDDEN // HEADS, "vocab_size": VOCAB,
        "max_position_embeddings": 4096, "rope_parameters": {"rope_type": "default", "rope_theta": 10000.0},
        "rms_norm_eps": 1e-5, "tie_word_embeddings": False, "dtype": "float32", "hidden_act": "silu",
    }


def tensor_shapes() -> list[tuple[str, tuple[int, ...]]]:
    shapes = [("model.embed_tokens.weight", (VOCAB, HIDDEN))]
    for layer in range(LAYERS):
        prefix = f"model.layers.{layer}"
        for name in ("q_proj", "k_proj", "v_proj", "o_proj"):
            shapes.append((f"{prefix}.self_attn.{name}.weight", (HIDDEN, HIDDEN)))
        shapes.append((f"{prefix}.mlp.gate_proj.weight", (MLP, HIDDEN)))
        shapes.append((f"{prefix}.mlp.up_proj.weight", (MLP, HIDDEN)))
        shapes.append((f"{prefix}.mlp.down_proj.weight", (HIDDEN, MLP)))
        shapes.append((f"{prefix}.input_layernorm.weight", (HIDDEN,)))
        shapes.append((f"{prefix}.post_attention_layernorm.weight", (HIDDEN,)))
    shapes += [("model.norm.weight", (HIDDEN,)), ("lm_head.weight", (VOCAB, HIDDEN))]
    return shapes


def write_sharded(out: Path, make_tensor) -> None:
    """Write tensors shard by shard (only one shard's tensors in memory) with an index."""
    from safetensors.torch import save_file

    out.mkdir(parents=True, exist_ok=True)
    (out / "config.json").write_text(json.dumps(config(), indent=2))
    weight_map: dict[str, str] = {}
    shard: dict = {}
    shard_bytes, shard_number, total = 0, 0, 0
    shapes = tensor_shapes()

    def flush() -> None:
        nonlocal shard, shard_bytes, shard_number
        name = f"model-{shard_number + 1:05d}.safetensors"
        save_file(shard, out / name, metadata={"format": "pt"})
        weight_map.update({tensor: name for tensor in shard})
        shard, shard_bytes, shard_number = {}, 0, shard_number + 1

    for name, shape in shapes:
        tensor = make_tensor(name, shape)
        shard[name] = tensor
        shard_bytes += tensor.numel() * 4
        total += tensor.numel() * 4
        if shard_bytes >= SHARD_BYTES:
            flush()
    if shard:
        flush()
    index = {"metadata": {"total_size": total}, "weight_map": weight_map}
    (out / "model.safetensors.index.json").write_text(json.dumps(index, indent=2))


def build(work_dir: Path, with_other: bool) -> dict[str, Path]:
    import torch

    from verification.provenance.weights import WeightIndex

    paths = {"base": work_dir / "base", "lora": work_dir / "lora-merge", "other": work_dir / "other"}

    def random_model(seed: int):
        generator = torch.Generator().manual_seed(seed)

        def make(name: str, shape: tuple[int, ...]):
            if len(shape) == 1:
                return torch.ones(shape)
            return torch.randn(shape, generator=generator) * 0.02

        return make

    if not (paths["base"] / "DONE").exists():
        write_sharded(paths["base"], random_model(0))
        (paths["base"] / "DONE").write_text("ok")
    if with_other and not (paths["other"] / "DONE").exists():
        write_sharded(paths["other"], random_model(1))
        (paths["other"] / "DONE").write_text("ok")
    if not (paths["lora"] / "DONE").exists():
        base = WeightIndex(paths["base"])
        generator = torch.Generator().manual_seed(7)

        def merged(name: str, shape: tuple[int, ...]):
            weight = base.load(name)
            if len(shape) == 2 and "embed" not in name and "lm_head" not in name:
                lora_b = torch.randn(shape[0], LORA_RANK, generator=generator) * 0.02
                lora_a = torch.randn(LORA_RANK, shape[1], generator=generator) * 0.02
                weight += lora_b @ lora_a
            return weight

        write_sharded(paths["lora"], merged)
        (paths["lora"] / "DONE").write_text("ok")
    return paths


def status_mib(field: str) -> float:
    """VmRSS (now) or VmHWM (peak) of this process. VmHWM belongs to the address space, which exec
    replaces, whereas ru_maxrss survives exec and would report the parent's build-phase peak."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(f"{field}:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def measure(model: str, base: str, other: str | None, threads: int) -> None:
    """Runs in a fresh process: imports first, then the check alone."""
    import torch  # counted in the baseline, as in a worker

    from verification.provenance import check_provenance

    baseline = status_mib("VmRSS")
    started, cpu_started = time.perf_counter(), time.process_time()
    section, flags = check_provenance(
        model, base, candidates={"other": other} if other else {}, claimed_training="full", base_name="base",
        intake={"format": "safetensors"}, threads=threads or None,
    )
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu_started
    peak = status_mib("VmHWM")
    print(json.dumps({
        "baseline_rss_mib": round(baseline, 1),
        "peak_rss_mib": round(peak, 1),
        "peak_above_baseline_mib": round(peak - baseline, 1),
        "wall_seconds": round(elapsed, 1),
        "cpu_seconds": round(cpu, 1),
        "torch_threads": threads or torch.get_num_threads(),
        "verdict": section["weights"]["verdict"],
        "lora": section["lora"]["label"],
        "lora_matrices_analysed": section["lora"]["analysed"],
        "flags": [flag["kind"] for flag in flags],
    }))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--work-dir", default="/tmp/verity-provenance-bench", type=Path)
    parser.add_argument("--with-other", action="store_true", help="also compare with an independent third model")
    parser.add_argument("--threads", type=int, default=1, help="torch threads for the check (0: torch's default)")
    parser.add_argument("--measure", nargs=3, metavar=("MODEL", "BASE", "OTHER"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        model, base, other = args.measure
        measure(model, base, other if other != "-" else None, args.threads)
        return
    started = time.perf_counter()
    paths = build(args.work_dir, args.with_other)
    model_bytes = sum(p.stat().st_size for p in paths["lora"].glob("*.safetensors"))
    print(f"models ready in {time.perf_counter() - started:.0f} s: submitted {model_bytes / 1e9:.2f} GB "
          f"({len(list(paths['lora'].glob('*.safetensors')))} shards), base the same size")
    largest = max(n * 4 for n in (VOCAB * HIDDEN, MLP * HIDDEN))
    print(f"largest tensor {largest / 2**20:.0f} MiB")
    other = str(paths["other"]) if args.with_other else "-"
    result = subprocess.run(
        [sys.executable, __file__, "--threads", str(args.threads), "--measure", str(paths["lora"]), str(paths["base"]), other],
        capture_output=True, text=True, check=True, cwd=Path(__file__).resolve().parent.parent,
    )
    figures = json.loads(result.stdout.strip().splitlines()[-1])
    for key, value in figures.items():
        print(f"{key}: {value}")


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    main()
