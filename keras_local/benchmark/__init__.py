"""The `keras-local benchmark` machinery."""
