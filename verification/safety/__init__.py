"""Safety profile of a model (methods.md §8): XSTest refusal rates, a refusal classifier measured
against human labels, and the paired comparison against a base model.

- `features`: the refusal cues read from a (prompt, completion) pair, and XSTest's own
  string-match rule.
- `classifier`: the refusal classifier (cues + a small logistic head shipped as
  `refusal_head.json`), and its agreement with human labels on a model it never saw.
- `human_labels`: the human-labelled completions of the XSTest dataset folder.
- `agreement`: agreement with human labels on a held-out model; rebuilds the shipped head.
- `regression`: McNemar over the unsafe prompts, model vs base -> a `safety_regression` flag.
- `cli`: `classify-refusals IN.csv --json OUT.json`.
- `tinymodels`: tiny models that refuse unsafe prompts, comply with everything, refuse everything.

Nothing here needs a network, an LLM judge or Django.
"""
