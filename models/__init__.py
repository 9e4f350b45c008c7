"""The multimodal emotion model, in plain torch (no Kafka here).

Modules, one concept each: ``config`` (shapes and knobs), ``text`` / ``image`` / ``video`` /
``audio`` / ``timefeatures`` / ``context`` (feature extractors), ``inputs`` (batched steps),
``state`` (per-user recurrent state and its bytes), ``model`` (fusion, two LSTM units, emotion
vector, two-stage heads), ``loss``, ``checkpoint``; ``datasets``, ``train``, ``evaluate``,
``baselines`` and ``cli`` build, fit and measure it on real offline data.
"""
