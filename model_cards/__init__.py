"""Model-card templates (Jinja, rendered by `huggingface_hub.ModelCard`), installed as `xlm_hf.model_cards`."""
