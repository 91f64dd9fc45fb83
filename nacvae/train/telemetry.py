"""What a pretraining run logs about its codes, and the detector of NAC's trivial solution.

At z = tanh(a) = 0 the NAC loss equals log N exactly, N being the number of codes its
negative term sums over (2B in the plain form, the queue length K in the momentum form),
and its gradient vanishes there: a run whose codes shrink to zero stays there. Two
numbers show it: ``code_abs_mean`` (mean |tanh a|) near 0 and ``loss_minus_log2b`` (the
loss minus log N) near 0.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

# A run counts as collapsed when, after its warm-up, both numbers stay below these for
# COLLAPSE_PATIENCE_STEPS steps in a row. Healthy runs sit well above both: codes start
# near |z| = 0.01 and the loss leaves log N by more than 1e-3 within the warm-up.
COLLAPSE_CODE_ABS = 1e-3
COLLAPSE_LOSS_GAP = 1e-3
COLLAPSE_PATIENCE_STEPS = 100
# Codes back above this after a collapse count as an escape (seen late in some runs).
ESCAPE_CODE_ABS = 1e-2
# The authors' warm-up in both their classification and hashing runs.
RECOMMENDED_WARMUP_STEPS = 500


@torch.no_grad()
def code_statistics(a: torch.Tensor) -> dict[str, float]:
    """Statistics of a batch of code pre-activations a [B, D]."""
    bits = a > 0
    return {
        "code_abs_mean": torch.tanh(a).abs().mean().item(),
        "code_positive_fraction": bits.float().mean().item(),
        "code_distinct_in_batch": float(torch.unique(bits, dim=0).shape[0]),
    }


def looks_collapsed(code_abs_mean: float, loss_minus_log2b: float) -> bool:
    """Both signs of the trivial solution z = 0 at once."""
    return code_abs_mean < COLLAPSE_CODE_ABS and abs(loss_minus_log2b) < COLLAPSE_LOSS_GAP


@dataclass
class CollapseMonitor:
    """Watches the logged rows of a NAC run; ``update`` returns "collapsed" once, when
    the trivial solution has held for ``patience`` steps after the warm-up, and "escaped"
    once, if the codes grow again afterwards. The run itself is never stopped."""

    warmup_steps: int
    patience: int = COLLAPSE_PATIENCE_STEPS
    since: int | None = None
    collapsed_at: int | None = None
    escaped_at: int | None = None

    def update(self, step: int, code_abs_mean: float, loss_minus_log2b: float) -> str | None:
        if self.collapsed_at is not None:
            if self.escaped_at is None and code_abs_mean > ESCAPE_CODE_ABS:
                self.escaped_at = step
                return "escaped"
            return None
        if step <= self.warmup_steps or not looks_collapsed(code_abs_mean, loss_minus_log2b):
            self.since = None
            return None
        if self.since is None:
            self.since = step
        if step - self.since >= self.patience:
            self.collapsed_at = self.since
            return "collapsed"
        return None


def collapse_message(collapsed_at: int, code_abs_mean: float, loss_minus_log2b: float, warmup_steps: int,
                     lr: float, flip_prob: float, l2_weight: float | None = None) -> str:
    """One sentence: what was seen, the likely cause and what to change."""
    if warmup_steps < RECOMMENDED_WARMUP_STEPS:
        cause = (f"most likely because the warm-up of {warmup_steps} steps is too short for lr {lr:g} at "
                 f"p = {flip_prob:g}; rerun with --warmup-steps {RECOMMENDED_WARMUP_STEPS} or more, or a lower --lr")
    elif l2_weight:
        cause = (f"most likely because the L2 penalty on the codes (--l2-weight {l2_weight:g}) outweighs the weak "
                 f"channel signal at p = {flip_prob:g}; rerun with --l2-weight 0 (the authors' hashing setting), "
                 f"a smaller --flip-prob or a lower --lr")
    else:
        cause = (f"most likely because the channel signal is too weak at p = {flip_prob:g} for lr {lr:g}; rerun with "
                 f"a smaller --flip-prob, a lower --lr or a longer --warmup-steps")
    return (
        f"Warning: NAC's codes had collapsed to the trivial solution z = 0 by step {collapsed_at} (mean |tanh a| "
        f"{code_abs_mean:.1e}, loss within {abs(loss_minus_log2b):.1e} of log 2B), {cause}. Training goes on."
    )
