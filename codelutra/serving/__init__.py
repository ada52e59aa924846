"""Using a refined model: answering questions (`ask`) and exporting it (GGUF, Hugging Face folder)."""
