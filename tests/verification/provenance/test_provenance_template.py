"""The reusable include renders a real provenance section (and degrades on skipped/error ones)."""

from __future__ import annotations

from django.template.loader import render_to_string

from verification.provenance import check_provenance

from .conftest import NEW_TOKENS


def render(section) -> str:
    return render_to_string("includes/provenance.html", {"section": section})


def test_include_renders_every_part_of_a_real_section(provenance_variants, tiny_base, tiny_other_base):
    section, _ = check_provenance(
        provenance_variants["tokens-raw"], tiny_other_base.path,
        candidates={"verity-test/tiny-base": tiny_base.path}, claimed_training="full",
        base_name="verity-test/tiny-other",
    )
    html = render(section)
    assert section["weights"]["summary"].split(" (")[0] in html.replace("&#x27;", "'")
    assert "★ nearest" in html and "verity-test/tiny-base" in html
    assert html.count("<tr") >= len(section["weights"]["per_layer"]) + len(section["config_diff"])
    assert "model.layers.1" in html  # per-layer rows
    assert "vocab_size" in html  # config diff table
    for token in NEW_TOKENS:
        assert token.replace("<", "&lt;").replace(">", "&gt;") in html  # escaped, never raw markup
    assert "mean_init" in html
    assert "unchanged: the weight matrices equal the base" in html
    # Hygiene as intake found it: this variant was saved without a card or license.
    assert "<dt>Format</dt><dd>safetensors</dd>" in html
    assert "<dt>License</dt><dd>none declared</dd>" in html and "<dt>Model card</dt><dd>missing</dd>" in html


def test_include_shows_skipped_and_failed_sections():
    assert "no claimed base model" in render({"status": "skipped", "reason": "no claimed base model"})
    assert "ValueError: bad" in render({"status": "error", "error": "ValueError: bad"})
    assert "No provenance check" in render({})
    evidence_only = render({"claimed_base": "org/base", "nearest": "org/other"})
    assert "org/other" in evidence_only and "<dl" in evidence_only


def test_include_renders_a_section_without_a_claimed_base(provenance_variants, tiny_base):
    section, _ = check_provenance(
        provenance_variants["full-ft"], None, candidates={"verity-test/tiny-base": tiny_base.path},
        claimed_training="full",
    )
    html = render(section).replace("&#x27;", "'")
    assert "none declared" in html and "None</strong>" not in html
    assert "No base is claimed, but the weights are derived from the known base verity-test/tiny-base" in html
    assert "differences from verity-test/tiny-base" in html
    alone, _ = check_provenance(provenance_variants["full-ft"], None)
    html = render(alone)
    assert "Not compared: no base is claimed" in html and "no known base of the same weight shapes" in html
