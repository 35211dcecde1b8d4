"""What both the processor and the checkpoint stores depend on, and nothing of either."""
