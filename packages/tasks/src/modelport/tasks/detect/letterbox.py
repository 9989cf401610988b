"""The detector's input geometry lives in modelport.common.letterbox: calibration sets (common) and the
run path (runtime) prepare photos with it before any task code runs."""

from modelport.common.letterbox import Placement, prepare, preprocess

__all__ = ["Placement", "prepare", "preprocess"]
