"""The parts of smoke_test: the watch cache (cache), the judgement of pods and Deployments (verdicts),
what is shown for a failure (evidence), the rollout watch (watch), the endpoint checks (endpoints)
and the user-storage check (storage), the helm history and the rollback of an unhealthy release (rollback);
objects and results are the small shared readers and rows."""
