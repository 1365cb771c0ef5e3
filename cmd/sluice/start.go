package main

func init() {
	register(actionCommand("start", "started", "Start a rollout's next release from step 0", false))
}
