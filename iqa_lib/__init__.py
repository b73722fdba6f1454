"""iqa-kit: do image-quality scores predict whether a classifier is right?

Reference implementation of Drenkow & Unberath, "A Causal Framework for
Aligning Image Quality Metrics and Deep Neural Network Robustness".
"""

__version__ = "0.1.0"
