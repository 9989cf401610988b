"""Classification: one ``[batch, N]`` score vector per image.

What exists for it lives where every backend already reaches it, and is named here for the task:
the comparison with the source (top-1 agreement, top-5 overlap, cosine min/mean, max abs diff) and its
floors are modelport.common.agreement's; labelled top-1/top-5 accuracy is modelport.bench.labeled's.
"""

from modelport.common.agreement import check_gate, compare, floors, gate_failures

__all__ = ["check_gate", "compare", "floors", "gate_failures"]
