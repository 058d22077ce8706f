"""The optimisation the trained stages share: the loop, its schedule and batch draw, the pushforward loss."""
