"""Train the iris classifier (written by the training work)."""
