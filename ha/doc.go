// Package ha lets several Sluice replicas share one etcd cluster: one leader decides,
// every replica serves.
//
// A Replica holds a lease in etcd and, under it, a registration (who it is, where its
// admin API listens, what its data planes have applied, the digest of its config) and
// a candidacy in a leader election (client/v3 concurrency). The replica that wins gets
// a Term: the right to decide until the Term's Lost channel closes. Every write a
// leader makes — rollout state, a command's outcome — is an etcd transaction fenced on
// its election key's create revision and lease, so a deposed or partitioned leader's
// write is refused by etcd itself, even one that reaches etcd late. A leader also stops
// deciding on its own when no keepalive has succeeded for half the lease TTL, before
// etcd can let the lease expire and elect another.
//
// Every replica follows the rollout states with WatchStates and applies them to its own
// data planes; it reports what it applied with ReportApplied, and the leader waits for
// the fleet with WaitApplied. Operator commands given to any replica go through etcd
// (Submit, WaitOutcome); the leader takes them from Term.Commands and records each
// outcome in the same transaction as the state change it caused, so a command is
// carried out exactly once even across a failover.
//
// Keys, under the configured prefix (default /sluice/):
//
//	leader/<lease>     election candidates (value: replica ID); the oldest leads
//	states/<rollout>   a rollout's state (the analyzer's State JSON), written only by a Term
//	replicas/<id>      a replica's registration (Info JSON), bound to its lease
//	commands/<id>      an operator command waiting for the leader (Command JSON)
//	outcomes/<id>      a command's outcome (Outcome JSON), bound to the deciding leader's lease
//	shared/<name>      a value every replica shares (Shared): sticky-cookie keys
//
// The state values are the bytes given to Save, unchanged, so `etcdctl get --prefix
// /sluice/states/` shows them as they are.
package ha
