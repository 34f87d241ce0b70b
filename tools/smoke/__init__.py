"""The parts of smoke_test: rollout watching, endpoint checks and the user-storage check."""
