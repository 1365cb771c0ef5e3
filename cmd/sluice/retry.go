package main

func init() {
	register(actionCommand("retry", "retried", "Retry an aborted rollout from step 0", false))
}
