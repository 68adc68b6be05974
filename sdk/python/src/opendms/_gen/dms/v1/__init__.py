"""Generated from proto/ by scripts/generate.py; never edited."""
