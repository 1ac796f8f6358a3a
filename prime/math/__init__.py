"""PRIME's math, pure: functions of tensors and plain values that import torch and the standard
library's pure parts only, nothing of the project, and do no I/O (tests/test_pure_math.py).

- rewards: implicit process rewards r_φ = β·log(π_φ/π_ref), their Q-values and batch normalisation;
- advantages: RLOO returns of the outcome and process rewards (Eq. 5; min and clip credit), whitening;
- losses: the PRM's cross-entropy, pairwise accuracy, PPO's clipped loss;
- filtering: the accuracy filter's decisions;
- logprobs: per-token log-probs with the LM head in chunks;
- localise: where token rewards put the blame (lines, most negative line, chance).
"""
