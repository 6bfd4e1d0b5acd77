"""LoRA-MoE (Dou et al. 2023): LoRA experts mixed by a per-token softmax router on the FFN projections.

layer.py: the LoraMoELinear module; adapter.py: wrap / save / load (checkpoint kind `loramoe`);
balance.py: the localized balancing constraint; method.py: the `loramoe` method.
"""
