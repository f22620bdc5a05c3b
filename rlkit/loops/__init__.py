"""Training loops: stable-baselines3's own loop (driven through a callback) and rlkit's online
loop."""
