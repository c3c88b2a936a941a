"""Callbacks for local learning rules."""
