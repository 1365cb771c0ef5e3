package main

func init() {
	register(actionCommand("abort", "aborted", "Abort a rollout: every request back to stable now", false))
}
