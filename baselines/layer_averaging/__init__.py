"""Heterogeneous (per-layer) model averaging, HMA-style (Lin et al., "Mitigating the Alignment Tax of
RLHF", EMNLP 2024): base + α_b·ΔW_vanilla with one α per contiguous block of layers, α searched on
held-out proxies (never a benchmark)."""
