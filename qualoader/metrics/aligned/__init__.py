"""DNN-aligned metrics: scores built from a reference network's own sensitivity."""
