"""A prior on a task model's accuracy: the estimators (:mod:`.estimators`: Q-prior, AC, DoC,
ATC, COT-top1) and their validation (:mod:`.validation`: leave one corruption out, summary,
verdict). The verdict in words is :mod:`iqa_lib.presentation.prior_report`.
"""
