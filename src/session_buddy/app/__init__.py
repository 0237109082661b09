"""The application layer: one service every face uses, its tool table, auth, metrics."""
