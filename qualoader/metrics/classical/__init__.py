"""Classical no-reference measures (sharpness, noise, contrast, ...), batched torch/kornia kernels."""
