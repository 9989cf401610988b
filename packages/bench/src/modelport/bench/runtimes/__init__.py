"""One module per toolchain; each imports its toolchain lazily."""
