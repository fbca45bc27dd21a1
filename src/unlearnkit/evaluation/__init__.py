"""Evaluation: pure metric functions (numpy/scipy/sklearn only) and the suites built on them.

The metric modules are deliberately import-light (no torch): ``truth_ratio``,
``probability``, ``forget_quality``, ``utility``, ``mia``, ``extraction``,
``rouge``, ``keywords``. Import them directly, e.g.
``from unlearnkit.evaluation.truth_ratio import truth_ratio``.
"""
