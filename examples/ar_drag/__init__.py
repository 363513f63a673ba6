"""The AR-Drag world of the example jobs: component configs and builders, held-out evaluation, Step 1 stages."""
