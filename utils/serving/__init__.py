"""Serving: one base model and any number of LoRA adapters behind an OpenAI-compatible HTTP API.

engine.py batches requests for the base and its adapters into shared generation steps; api.py is the
FastAPI app over it; serve.py (the entry script) loads the model and runs the app with uvicorn.
"""
