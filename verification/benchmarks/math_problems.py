"""MATH-500 (PRM800K's 500-problem subset) and full MATH (Hendrycks et al. 2021).

Setup (methods.md §6): 4-shot Minerva-style (lm-eval `minerva_math` exemplars, copied below, and
"Problem:\n…\n\nSolution:" format; the default) or 0-shot chain-of-thought asking for a
\\boxed{} answer. Answers are checked with the pinned math-verify, verify(parse(gold), parse(pred)),
gold first; an exception on the prediction is wrong, never correct. Chain-of-thought is inherent
(cot=False is not supported).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from verification.benchmarks.base import BenchmarkSpec, DatasetUnavailable, Item, ItemScore, Request, Response, Setup
from verification.datasets import read_records
from verification.records import Generation, GenerationRequest, SamplingParams
from verification.scoring import math_answers

ZERO_SHOT_INSTRUCTION = "Solve the problem step by step and put the final answer in \\boxed{}."


# The four Minerva exemplars (Lewkowycz et al. 2022), as in lm-eval's `minerva_math` task
# (lm_eval/tasks/minerva_math/utils.py, list_fewshot_samples); copied because that module
# refuses to import without antlr4 4.11.
MINERVA_EXEMPLARS: tuple[dict[str, str], ...] = (
    {
        "problem": 'Find the domain of the expression  $\\frac{\\sqrt{x-2}}{\\sqrt{5-x}}$.',
        "solution": 'The expressions inside each square root must be non-negative. Therefore, $x-2 \\ge 0$, so $x\\ge2$, and $5 - x \\ge 0$, so $x \\le 5$. Also, the denominator cannot be equal to zero, so $5-x>0$, which gives $x<5$. Therefore, the domain of the expression is $\\boxed{[2,5)}$.\nFinal Answer: The final answer is $[2,5)$. I hope it is correct.',
    },
    {
        "problem": 'If $\\det \\mathbf{A} = 2$ and $\\det \\mathbf{B} = 12,$ then find $\\det (\\mathbf{A} \\mathbf{B}).$',
        "solution": 'We have that $\\det (\\mathbf{A} \\mathbf{B}) = (\\det \\mathbf{A})(\\det \\mathbf{B}) = (2)(12) = \\boxed{24}.$\nFinal Answer: The final answer is $24$. I hope it is correct.',
    },
    {
        "problem": 'Terrell usually lifts two 20-pound weights 12 times. If he uses two 15-pound weights instead, how many times must Terrell lift them in order to lift the same total weight?',
        "solution": 'If Terrell lifts two 20-pound weights 12 times, he lifts a total of $2\\cdot 12\\cdot20=480$ pounds of weight.  If he lifts two 15-pound weights instead for $n$ times, he will lift a total of $2\\cdot15\\cdot n=30n$ pounds of weight.  Equating this to 480 pounds, we can solve for $n$:\n\\begin{align*}\n30n&=480\\\\\n\\Rightarrow\\qquad n&=480/30=\\boxed{16}\n\\end{align*}\nFinal Answer: The final answer is $16$. I hope it is correct.',
    },
    {
        "problem": 'If the system of equations\n\n\\begin{align*}\n6x-4y&=a,\\\\\n6y-9x &=b.\n\\end{align*}has a solution $(x, y)$ where $x$ and $y$ are both nonzero,\nfind $\\frac{a}{b},$ assuming $b$ is nonzero.',
        "solution": 'If we multiply the first equation by $-\\frac{3}{2}$, we obtain\n\n$$6y-9x=-\\frac{3}{2}a.$$Since we also know that $6y-9x=b$, we have\n\n$$-\\frac{3}{2}a=b\\Rightarrow\\frac{a}{b}=\\boxed{-\\frac{2}{3}}.$$\nFinal Answer: The final answer is $-\\frac{2}{3}$. I hope it is correct.',
    },
)


class MathSpec(BenchmarkSpec):
    request_kind = "generate"
    primary_metric = "math_verify"
    default_setup = Setup(shots=4, cot=True, chat_template=False)
    version = "1"

    def __init__(self, slug: str, relative_path: str, title: str) -> None:
        self.slug = slug
        self.title = title
        self._relative_path = relative_path

    def unsupported_reason(self, setup: Setup) -> str | None:
        if not setup.cot:
            return "MATH answers need worked solutions: only chain-of-thought setups are supported"
        if setup.shots not in (0, 4):
            return "MATH supports 4-shot Minerva or 0-shot chain-of-thought"
        return None

    def read_items(self, datasets_dir: Path) -> tuple[list[Item], dict[str, Any]]:
        path, source = self.data_file(datasets_dir, self._relative_path)
        items = []
        for index, row in enumerate(read_records(path)):
            answer = row.get("answer") or math_answers.last_boxed(row.get("solution", ""))
            if not answer:
                raise DatasetUnavailable(f"{self.slug} item {index} has no answer")
            item_id = str(row.get("unique_id", row.get("idx", index)))
            items.append(Item(index, item_id, {"problem": row["problem"], "answer": answer,
                                               "subject": row.get("subject", row.get("type", ""))}))
        return items, source

    def prepare(self, datasets_dir: Path, setup: Setup) -> str:
        if setup.shots == 0:
            return ""
        return "".join(f"Problem:\n{e['problem']}\n\nSolution: {e['solution']}\n\n" for e in MINERVA_EXEMPLARS)

    def sampling_params(self, setup: Setup) -> SamplingParams:
        return SamplingParams(temperature=0.0, max_tokens=1024, stop=("Problem:", "</s>", "<|im_end|>"))

    def build_requests(self, item: Item, setup: Setup, context: Any) -> list[Request]:
        if setup.shots == 0:
            body = f"Problem:\n{item.data['problem']}\n\n{ZERO_SHOT_INSTRUCTION}\n\nSolution:"
        else:
            body = f"Problem:\n{item.data['problem']}\n\nSolution:"
        return [GenerationRequest((context or "") + body, self.sampling_params(setup), chat=setup.chat_template)]

    def gold_text(self, item: Item) -> str:
        return item.data["answer"]

    def score(self, item: Item, requests: list[Request], responses: list[Response]) -> ItemScore:
        output = responses[0].text  # type: ignore[union-attr]
        correct, extracted, unparsed, details = math_answers.check(item.data["answer"], output)
        return ItemScore(correct, float(correct), extracted, output, unparsed=unparsed, details=details)

    def gold_responses(self, item: Item, requests: list[Request]) -> list[Response]:
        answer = item.data["answer"]
        return [Generation(text=f" Working as in the reference.\nFinal Answer: The final answer is $\\boxed{{{answer}}}$.")]
