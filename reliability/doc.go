// Package reliability proves the project's delivery promises under the
// failures operators see: every accepted job ends in exactly one stored
// result, and Graph acts at most once per idempotency key except where a
// result is marked uncertain.
//
// Its tests run a real system (embedded nats-server or a three-node
// JetStream cluster, the Graph and Entra ID double over TLS, workers running
// the production code in process or as separate processes), inject one
// fault each — a stopped JetStream leader, every node of the cluster
// SIGKILLed at once, a SIGKILLed worker, a NATS outage, Graph storms, an
// Entra ID outage, hostile input — and then judge
// the outcome with Check, which reads nothing but Graph's call log and the
// streams. Behind the -soak flag, TestSoak pushes 100,000 jobs through
// three worker processes and reports their memory and goroutines over
// time, and TestSoakChurn runs an hour of ten rate-limited tenants while
// workers and NATS nodes restart and Graph fails 2% of calls.
//
// docs/reliability.md says what is promised, how each fault is tested and
// the figures of the last run.
package reliability
