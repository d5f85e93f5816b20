"""Answer extractors and scorers. No LLM judge anywhere: every answer here is checked by rule."""
