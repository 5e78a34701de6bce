"""Cornucopia library code: one module per job (see README, "How it works")."""
