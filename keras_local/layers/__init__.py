"""Building-block layers (filled by the rule families)."""
