"""Cornucopia library code: one module per job (see README, "How it works").

Set before any Hugging Face library is imported (they read these once): a hub id
given without network must fail within seconds instead of hanging.
"""
import os

os.environ.setdefault("HF_HUB_ETAG_TIMEOUT", "10")
os.environ.setdefault("HF_HUB_DOWNLOAD_TIMEOUT", "30")
