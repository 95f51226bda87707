// Package cluster holds no code of its own: its tests run Custos the way
// issue 8 asks it to be proven, on a three-node NATS JetStream cluster with
// replicated ledger streams and region placement (two Custos processes,
// stream leader failover), and as a real `custos serve` process killed with
// SIGKILL mid-load. They check SPEC §2's idempotent re-send, §3's
// read-your-writes across processes and §4's single, fork-free checkpoint
// sequence that `custos verify` accepts.
package cluster
