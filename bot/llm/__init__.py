"""LLM providers: one small protocol (L1) and the implementations behind ``[llm] provider``."""
