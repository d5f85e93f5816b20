"""HumanEval (Chen et al. 2021): pass@1, greedy, the completion appended to the prompt and run
against the item's tests in the sandbox (verification.sandbox; generated code is hostile input).

Stop sequences are the Codex paper's ("\\nclass", "\\ndef", "\\n#", "\\nif", "\\nprint"). A program
that fails, crashes, exits with any code, prints anything or runs out of time or memory is simply
wrong; only a sandbox whose own status channel reports a setup failure is a harness error. Where
no sandbox can be made (no namespaces), the benchmark is not run at all (`NoSandbox`, raised
before any generation): generated code never runs unsandboxed. What a program prints is kept
only as a private excerpt (`sandbox.PRIVATE_OUTPUT_KEY` in the sample's details). The chat
template is not supported: a chat reply is not a continuation of the function body.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from verification import sandbox
from verification.benchmarks.base import BenchmarkSpec, Item, ItemScore, Request, Response, Setup, UnsupportedSetup
from verification.datasets import read_records
from verification.records import Generation, GenerationRequest, SamplingParams

STOP = ("\nclass", "\ndef", "\n#", "\nif", "\nprint")


class NoSandbox(UnsupportedSetup):
    """HumanEval cannot be run here: generated code only ever runs in the sandbox, and this
    machine cannot make one. The message starts "not run: no sandbox" and says why."""


def truncate_at_stop(completion: str, stops: tuple[str, ...] = STOP) -> str:
    """Cut the completion at the first stop sequence (Codex convention), for backends that do not
    apply stop sequences themselves; the function body is all that is kept."""
    cut = min((pos for pos in (completion.find(s) for s in stops) if pos >= 0), default=len(completion))
    return completion[:cut]


def program_text(item: Item, completion: str) -> str:
    data = item.data
    return f"{data['prompt']}{completion}\n\n{data['test']}\n\ncheck({data['entry_point']})\n"


class HumanEvalSpec(BenchmarkSpec):
    slug = "humaneval"
    version = "1"
    title = "HumanEval"
    request_kind = "generate"
    primary_metric = "pass@1"
    default_setup = Setup(shots=0, cot=False, chat_template=False)

    def __init__(self, limits: sandbox.Limits | None = None, workers: int = 2) -> None:
        self.limits = limits or sandbox.Limits()
        self.workers = workers

    def unsupported_reason(self, setup: Setup) -> str | None:
        if setup.shots or setup.cot or setup.chat_template:
            return "HumanEval is run 0-shot as a plain completion of the function (no CoT, no chat template)"
        return None

    def read_items(self, datasets_dir: Path) -> tuple[list[Item], dict[str, Any]]:
        path, source = self.data_file(datasets_dir, "humaneval/HumanEval.jsonl.gz")
        items = [Item(i, row["task_id"], dict(row)) for i, row in enumerate(read_records(path))]
        return items, source

    def prepare(self, datasets_dir: Path, setup: Setup) -> Any:
        """Refuse the whole benchmark, before anything is generated or run, without a sandbox."""
        reason = sandbox.unavailable_reason(self.limits)
        if reason is not None:
            raise NoSandbox(f"not run: no sandbox: {reason.removeprefix('no sandbox: ')}")
        return None

    def sampling_params(self, setup: Setup) -> SamplingParams:
        return SamplingParams(temperature=0.0, max_tokens=512, stop=STOP)

    def build_requests(self, item: Item, setup: Setup, context: Any) -> list[Request]:
        return [GenerationRequest(item.data["prompt"], self.sampling_params(setup), chat=False)]

    def gold_text(self, item: Item) -> str:
        return item.data["canonical_solution"]

    def score(self, item: Item, requests: list[Request], responses: list[Response]) -> ItemScore:
        completion = responses[0].text  # type: ignore[union-attr]
        body = truncate_at_stop(completion)
        result = sandbox.run_python(program_text(item, body), self.limits)
        if result.status == sandbox.SANDBOX_ERROR:
            raise sandbox.SandboxError(result.detail or "sandbox failed")
        passed = result.status == sandbox.PASSED
        details = {**result.summary(), "truncated_at_stop": len(body) < len(completion)}
        return ItemScore(passed, float(passed), None, completion, details=details)

    def score_batch(self, items, requests, responses):
        # Each program runs in its own process; threads only wait on them.
        def one(args):
            item, reqs, resps = args
            try:
                return self.score(item, reqs, resps)
            except Exception as exc:
                return exc

        with ThreadPoolExecutor(max_workers=max(1, self.workers)) as pool:
            return list(pool.map(one, zip(items, requests, responses)))

    def gold_responses(self, item: Item, requests: list[Request]) -> list[Response]:
        return [Generation(text=item.data["canonical_solution"])]
