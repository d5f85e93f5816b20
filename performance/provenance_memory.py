"""Peak memory of the provenance check against model size: it stays flat.

Builds synthetic Llama-shaped safetensors models of growing size (same width, more layers, the
way 7B -> 70B grows mostly in depth) under --work-dir (default /tmp/verity-provenance-bench): for
each size a base and a copy with a rank-8 LoRA merged into every linear layer, written shard by
shard with an index. Then runs `check_provenance(copy, base)` — weight distances, the LoRA
signature, added tokens — in a fresh process per size and prints, per model size, the peak RSS
(VmHWM), the RSS before the check (interpreter + torch), the peak above that baseline in units
of the largest tensor (float32, as the check reads it), and the wall time.

What it shows: tensors are streamed one (or one row block, CHUNK_ELEMENTS) at a time from both
models in lockstep, so the peak above the baseline is a few tensors whatever the number of
layers, never the two models (2x the size column).

    .venv/bin/python performance/provenance_memory.py [--layers 1,4,16,32,64] [--work-dir DIR]
        [--dtype bf16|f32] [--vocab N] [--threads N] [--keep] [--json OUT]

(`--layers 16 --dtype f32 --vocab 32000` is the 1.08 GB model core.py's thread figures were taken on.)
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
LORA_RANK = 8
SHARD_BYTES = 512 * 1024 * 1024
DEFAULT_LAYERS = (1, 4, 16, 32, 64)


@dataclass(frozen=True)
class Shape:
    """A Llama-like model's dimensions; the default grows from 0.1 GB (1 layer) to 1.7 GB (64) in bf16."""

    layers: int
    hidden: int = 1024
    mlp: int = 2816
    vocab: int = 16000
    heads: int = 16
    dtype: str = "bf16"  # as stored on disk; the check reads every tensor as float32

    @property
    def bytes_per_value(self) -> int:
        return 2 if self.dtype == "bf16" else 4

    def tensors(self) -> list[tuple[str, tuple[int, ...]]]:
        shapes = [("model.embed_tokens.weight", (self.vocab, self.hidden))]
        for layer in range(self.layers):
            prefix = f"model.layers.{layer}"
            for name in ("q_proj", "k_proj", "v_proj", "o_proj"):
                shapes.append((f"{prefix}.self_attn.{name}.weight", (self.hidden, self.hidden)))
            shapes.append((f"{prefix}.mlp.gate_proj.weight", (self.mlp, self.hidden)))
            shapes.append((f"{prefix}.mlp.up_proj.weight", (self.mlp, self.hidden)))
            shapes.append((f"{prefix}.mlp.down_proj.weight", (self.hidden, self.mlp)))
            shapes.append((f"{prefix}.input_layernorm.weight", (self.hidden,)))
            shapes.append((f"{prefix}.post_attention_layernorm.weight", (self.hidden,)))
        return shapes + [("model.norm.weight", (self.hidden,)), ("lm_head.weight", (self.vocab, self.hidden))]

    def model_bytes(self) -> int:
        return sum(_numel(shape) for _, shape in self.tensors()) * self.bytes_per_value

    def largest_tensor_f32_bytes(self) -> int:
        return max(_numel(shape) for _, shape in self.tensors()) * 4

    def config(self) -> dict:
        return {
            "architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": self.hidden,
            "intermediate_size": self.mlp, "num_hidden_layers": self.layers, "num_attention_heads": self.heads,
            "num_key_value_heads": self.heads, "head_dim": self.hidden // self.heads, "vocab_size": self.vocab,
            "max_position_embeddings": 4096, "rope_parameters": {"rope_type": "default", "rope_theta": 10000.0},
            "rms_norm_eps": 1e-5, "tie_word_embeddings": False, "hidden_act": "silu",
            "dtype": "bfloat16" if self.dtype == "bf16" else "float32",
        }


def _numel(shape: tuple[int, ...]) -> int:
    count = 1
    for dim in shape:
        count *= dim
    return count


def write_sharded(out: Path, shape: Shape, make_tensor) -> None:
    """Write the tensors shard by shard (only one shard's tensors in memory) with an index."""
    import torch

    out.mkdir(parents=True, exist_ok=True)
    (out / "config.json").write_text(json.dumps(shape.config(), indent=2))
    stored = torch.bfloat16 if shape.dtype == "bf16" else torch.float32
    weight_map: dict[str, str] = {}
    shard: dict = {}
    shard_bytes, total = 0, 0
    for name, dims in shape.tensors():
        tensor = make_tensor(name, dims).to(stored).contiguous()
        shard[name] = tensor
        shard_bytes += tensor.numel() * tensor.element_size()
        total += tensor.numel() * tensor.element_size()
        if shard_bytes >= SHARD_BYTES:
            _flush(out, shard, weight_map)
            shard, shard_bytes = {}, 0
    if shard:
        _flush(out, shard, weight_map)
    index = {"metadata": {"total_size": total}, "weight_map": weight_map}
    (out / "model.safetensors.index.json").write_text(json.dumps(index, indent=2))


def _flush(out: Path, shard: dict, weight_map: dict[str, str]) -> None:
    from safetensors.torch import save_file

    name = f"model-{len(set(weight_map.values())) + 1:05d}.safetensors"
    save_file(shard, out / name, metadata={"format": "pt"})
    weight_map.update({tensor: name for tensor in shard})


def build_pair(work_dir: Path, shape: Shape) -> tuple[Path, Path]:
    """(base, LoRA-merged copy) for `shape`, built once under work_dir."""
    import torch

    from verification.provenance.weights import WeightIndex

    root = work_dir / f"{shape.dtype}-h{shape.hidden}-l{shape.layers}-v{shape.vocab}"
    base_dir, lora_dir = root / "base", root / "lora-merge"
    if not (base_dir / "DONE").exists():
        generator = torch.Generator().manual_seed(0)

        def random(name: str, dims: tuple[int, ...]):
            return torch.ones(dims) if len(dims) == 1 else torch.randn(dims, generator=generator) * 0.02

        write_sharded(base_dir, shape, random)
        (base_dir / "DONE").write_text("ok")
    if not (lora_dir / "DONE").exists():
        base = WeightIndex(base_dir)
        generator = torch.Generator().manual_seed(7)

        def merged(name: str, dims: tuple[int, ...]):
            weight = base.load(name)
            if len(dims) == 2 and "embed" not in name and "lm_head" not in name:
                lora_b = torch.randn(dims[0], LORA_RANK, generator=generator) * 0.02
                lora_a = torch.randn(LORA_RANK, dims[1], generator=generator) * 0.02
                weight += lora_b @ lora_a
            return weight

        write_sharded(lora_dir, shape, merged)
        (lora_dir / "DONE").write_text("ok")
    return base_dir, lora_dir


def status_mib(field: str) -> float:
    """VmRSS (now) or VmHWM (peak) of this process. VmHWM belongs to the address space, which exec
    replaces, whereas ru_maxrss survives exec and would report the parent's build-phase peak."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(f"{field}:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def measure(model: str, base: str, threads: int) -> dict:
    """Runs in a fresh process: imports first (the baseline), then the check alone."""
    import torch  # counted in the baseline, as in a worker

    from verification.provenance import check_provenance

    baseline = status_mib("VmRSS")
    started = time.perf_counter()
    section, flags = check_provenance(
        model, base, claimed_training="full", base_name="base", intake={"format": "safetensors"},
        threads=threads or None,
    )
    return {
        "baseline_rss_mib": round(baseline, 1),
        "peak_rss_mib": round(status_mib("VmHWM"), 1),
        "wall_seconds": round(time.perf_counter() - started, 1),
        "torch_threads": threads or torch.get_num_threads(),
        "verdict": section["weights"]["verdict"],
        "lora": section["lora"]["verdict"],
        "flags": [flag["kind"] for flag in flags],
    }


def measure_in_subprocess(model: Path, base: Path, threads: int = 1, timeout: float | None = None) -> dict:
    result = subprocess.run(
        [sys.executable, str(Path(__file__).resolve()), "--threads", str(threads), "--measure", str(model), str(base)],
        capture_output=True, text=True, check=True, cwd=REPO_ROOT, timeout=timeout,
    )
    figures = json.loads(result.stdout.strip().splitlines()[-1])
    figures["peak_above_baseline_mib"] = round(figures["peak_rss_mib"] - figures["baseline_rss_mib"], 1)
    return figures


def sweep(work_dir: Path, layer_counts: list[int], dtype: str, vocab: int, threads: int, keep: bool) -> list[dict]:
    rows = []
    for layers in layer_counts:
        shape = Shape(layers=layers, dtype=dtype, vocab=vocab)
        started = time.perf_counter()
        base, lora = build_pair(work_dir, shape)
        built_s = time.perf_counter() - started
        figures = measure_in_subprocess(lora, base, threads)
        largest_mib = shape.largest_tensor_f32_bytes() / 2**20
        rows.append({**asdict(shape), "model_mb": shape.model_bytes() / 1e6, "largest_tensor_f32_mib": largest_mib,
                     "above_in_largest_tensors": figures["peak_above_baseline_mib"] / largest_mib,
                     "build_seconds": round(built_s, 1), **figures})
        print_row(rows[-1], first=len(rows) == 1)
        if not keep:
            shutil.rmtree(base.parent, ignore_errors=True)
    return rows


def print_row(row: dict, first: bool) -> None:
    if first:
        print(f"{'layers':>6} {'model MB':>9} {'2 models MB':>11} {'largest f32 MiB':>15} {'baseline MiB':>12} "
              f"{'peak MiB':>9} {'above MiB':>9} {'x largest':>9} {'wall s':>7}  verdict / lora")
    print(f"{row['layers']:>6} {row['model_mb']:>9.0f} {2 * row['model_mb']:>11.0f} "
          f"{row['largest_tensor_f32_mib']:>15.1f} "
          f"{row['baseline_rss_mib']:>12.0f} {row['peak_rss_mib']:>9.0f} {row['peak_above_baseline_mib']:>9.0f} "
          f"{row['above_in_largest_tensors']:>9.2f} {row['wall_seconds']:>7.1f}  {row['verdict']} / {row['lora']}",
          flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--work-dir", default="/tmp/verity-provenance-bench", type=Path)
    parser.add_argument("--layers", default=",".join(map(str, DEFAULT_LAYERS)), help="model sizes, as layer counts")
    parser.add_argument("--dtype", choices=("bf16", "f32"), default="bf16", help="stored dtype of the weights")
    parser.add_argument("--vocab", type=int, default=Shape.vocab, help="vocabulary rows (embedding, lm_head)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads for the check (0: torch's default)")
    parser.add_argument("--keep", action="store_true", help="keep the built models for a later run")
    parser.add_argument("--json", dest="json_out", type=Path, default=None)
    parser.add_argument("--measure", nargs=2, metavar=("MODEL", "BASE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        print(json.dumps(measure(*args.measure, args.threads)))
        return
    layers = [int(n) for n in args.layers.split(",")]
    rows = sweep(args.work_dir, layers, args.dtype, args.vocab, args.threads, args.keep)
    if args.json_out:
        args.json_out.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    sys.path.insert(0, str(REPO_ROOT))
    main()
