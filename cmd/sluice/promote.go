package main

func init() {
	register(actionCommand("promote", "promoted",
		"Promote a rollout past its current pause or step (--full: straight to 100%)", true))
}
