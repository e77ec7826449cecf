"""Generated from protos/inference/; regenerate with `make proto`."""
