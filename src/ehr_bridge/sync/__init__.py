"""The flows (pull, deliver, collect, push), the cycle that runs them, and the scheduler."""
