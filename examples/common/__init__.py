"""What every example job shares: config groups of the core's parts, launching under torchrun, the run loop, drawing."""
