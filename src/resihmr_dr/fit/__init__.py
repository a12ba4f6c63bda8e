"""Fitting stages: the initial intact-body fit, RAFO (residual anchor-factor optimisation), losses and priors."""
