"""Simulated cloud control planes for the test bed: the providers' documented behaviour, each rule with its source."""
