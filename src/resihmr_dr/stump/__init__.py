"""Residual-limb reconstruction: cut at the endpoint, cap with a dome, measure the stump."""
